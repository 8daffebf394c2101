"""Instructions per request, counted by valgrind's callgrind: a measure that a busy machine does
not move (the same binary and inputs give the same count), for comparing two versions of the
gateway side by side where timings are noise.

    .venv/bin/python scripts/bench_instructions.py                 this tree, chat on the mock
    .venv/bin/python scripts/bench_instructions.py --tree /tmp/old  another checkout, same venv
    .venv/bin/python scripts/bench_instructions.py --door messages  a door through a fake upstream
    .venv/bin/python scripts/bench_instructions.py --door all       chat, messages, responses
    .venv/bin/python scripts/bench_instructions.py --door chat --bare   the floor: bench_bare.py
    .venv/bin/python scripts/bench_instructions.py --door all --concurrency 64 --requests 640
                                                                   64 at a time, as the bench

The gateway app is built in-process (a budget, rate limits and the SQLite record writer on),
started through its ASGI lifespan as a server starts it, and driven through ASGI directly, so
what is counted is Circuit's own work per request — the flow, the exchange, accounting, the
relay, the writer thread — not a server's or a client's.
Instrumentation is switched on only around the measured requests. Each request's scope carries
the HangUp `circuit serve`'s HTTP protocol gives it (circuit.gateway.hang_up), so the count is
of the path `circuit serve` runs.

Without `--door` the chat door is served by the in-process mock provider (no HTTP at all). With
`--door chat|messages|responses|all` every door goes over HTTP to scripts/bench_upstream.py (the
fast fake upstream of scripts/bench): chat and Responses to it as an OpenAI upstream, Messages
passed through to it as an Anthropic one — so the doors' counts compare side by side (the
aiohttp client's work is in each of them). The fake upstream is served on the gateway's own
event loop, in the counted process: in a process of its own, how its answers met the gateway's
loop depended on the machine's load, and the count with it (±8 % on JSON); on one loop the
order of everything is the same each run. Its share (precomputed bytes written) is the same
for every tree measured.
With `--bare` the app counted is scripts/bench_bare.py's relay (the floor scripts/bench reports
Circuit against) on the same fake upstream: what Circuit's count is over it is Circuit's own work.
Streams are of 20 text deltas: 22 events for chat, 26 for Messages, 28 for Responses.
With `--concurrency N` the requests go N at a time (gathered), as scripts/bench's load sends
64: what only many requests in flight cost — the garbage collector above all, whose work
follows how many objects are alive at once — shows only there. One at a time, each request
is awaited in place (a task and a gather around each would add turns of the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

KEY = "sk-bench-instructions-0123456789"
BODY = (b'{"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", '
        b'"content": "Tell me about instruction counts"}]')
CLAUDE = "claude-sonnet-4-5"
#: Each door: its path and its request body (without the closing brace).
DOORS = {
    "chat": ("/v1/chat/completions", BODY),
    "messages": ("/v1/messages", BODY.replace(b"gpt-4o-mini", CLAUDE.encode())),
    "responses": ("/v1/responses", b'{"model": "gpt-4o-mini", "max_output_tokens": 20, '
                                   b'"input": "Tell me about instruction counts"'),
}
UPSTREAM = Path(__file__).resolve().parent / "bench_upstream.py"


def _scope(raw: bytes, path: str = "/v1/chat/completions") -> dict:
    return {"type": "http", "method": "POST", "path": path, **_hang_up(),
            "headers": [(b"authorization", f"Bearer {KEY}".encode()),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(raw)).encode())],
            "query_string": b"", "scheme": "http", "server": ("bench", 80),
            "client": ("bench", 1), "root_path": ""}


def _hang_up() -> dict:
    """The HangUp `circuit serve`'s protocol puts in every request's scope; none in a tree from
    before it (looked up once: a failing import each request would be counted)."""
    if not hasattr(_hang_up, "make"):
        try:
            from circuit.gateway.hang_up import SCOPE_KEY, HangUp
            _hang_up.make = lambda: {SCOPE_KEY: HangUp()}  # type: ignore[attr-defined]
        except ImportError:
            _hang_up.make = dict  # type: ignore[attr-defined]
    return _hang_up.make()  # type: ignore[attr-defined]


async def _one(app, raw: bytes, path: str) -> bytes:
    """One request; its status line's code and body, as `b"200 ..."` (for the warm-up's check)."""
    sent = False
    answer: list[bytes] = []

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()
        return {}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer.append(str(message["status"]).encode() + b" ")
        elif not answer[1:]:
            answer.append(message.get("body", b""))

    await app(_scope(raw, path), receive, send)
    return b"".join(answer)


async def _child(requests: int, stream: bool, door: str, http: bool, bare: bool,
                 concurrency: int) -> None:
    from circuit.config import load_settings
    from circuit.gateway.app import create_app

    upstream = await _serve_upstream() if http else None
    folder = Path(tempfile.mkdtemp(prefix="circuit-ir-"))
    if bare:
        import bench_bare

        app = bench_bare.BareRelay(upstream, "sk-bench-upstream")
    else:
        environ = {
            "CIRCUIT_DB_PATH": str(folder / "circuit.db"), "CIRCUIT_API_KEYS": KEY,
            "CIRCUIT_LOG_LEVEL": "warning", "CIRCUIT_DEFAULT_RPM": "1000000",
            "CIRCUIT_DEFAULT_TPM": "100000000", "CIRCUIT_DAILY_USD_LIMIT": "1000"}
        if upstream is not None:
            # As scripts/bench's gateway: OpenAI at the fake upstream, claude-* to it as
            # Anthropic.
            environ.update({"PROVIDER": "openai", "OPENAI_BASE_URL": upstream,
                            "OPENAI_API_KEY": "sk-bench-upstream",
                            "BENCH_ANTHROPIC_KEY": "sk-ant-bench-upstream"})
            (folder / "circuit.toml").write_text(
                f'[providers.anthropic]\nkind = "anthropic"\nbase_url = "{upstream}"\n'
                'api_key_env = "BENCH_ANTHROPIC_KEY"\n'
                f'[routes]\n"{CLAUDE}" = ["anthropic:{CLAUDE}"]\n')
        app = create_app(load_settings(environ=environ, cwd=folder))
    path, body = DOORS[door]
    raw = body + (b', "stream": true}' if stream else b"}")
    # Started and stopped through its lifespan, as a server runs it (what startup settles, such
    # as the heap, is settled here too).
    lifespan: asyncio.Queue[dict] = asyncio.Queue()
    answers: asyncio.Queue[dict] = asyncio.Queue()
    running = asyncio.create_task(app({"type": "lifespan", "state": {}}, lifespan.get,
                                      answers.put))
    await lifespan.put({"type": "lifespan.startup"})
    started = await answers.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        for _ in range(100):  # warm: leases taken, memos filled, code paths compiled
            answer = await _one(app, raw, path)
            assert answer.startswith(b"200 "), answer[:300]
        await asyncio.sleep(0.2)
        # No timed GIL hand-overs (every 5 ms by default, so as many as the machine is slow):
        # the writer thread runs when the loop's thread waits, as it does at every iteration.
        sys.setswitchinterval(60)
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        if concurrency == 1:  # awaited in place: a task and a gather each would add loop turns
            for _ in range(requests):
                await _one(app, raw, path)
        else:
            for _ in range(requests // concurrency):
                await asyncio.gather(*(_one(app, raw, path) for _ in range(concurrency)))
        writer = None if bare else app.state.gateway.writer
        while writer is not None and writer.pending:  # noqa: ASYNC110 - the writer counts
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        print("DONE", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    finally:
        await lifespan.put({"type": "lifespan.shutdown"})
        await running
        shutil.rmtree(folder, ignore_errors=True)


async def _serve_upstream() -> str:
    """scripts/bench_upstream.py's server (20-event streams) on this loop; its URL."""
    sys.path.insert(0, str(UPSTREAM.parent))
    import bench_upstream

    up = bench_upstream.Upstream(bench_upstream.Answers(20), 0.0, 0.0)
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(bench_upstream.serve("127.0.0.1", 0, up, port.set_result))
    _serve_upstream.task = task  # type: ignore[attr-defined]  # kept from the collector
    return f"http://127.0.0.1:{await port}"


def measure(tree: Path, requests: int, stream: bool, door: str = "chat",
            http: bool = False, bare: bool = False,
            concurrency: int = 1) -> tuple[int, int]:
    """Instructions callgrind counted for `requests` requests: all threads, and the event
    loop's thread alone (the writer thread's batches, and so its count, follow timing)."""
    out = Path(tempfile.mkdtemp(prefix="circuit-cg-")) / "callgrind.out"
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
               f"--callgrind-out-file={out}", sys.executable, __file__, "--child",
               "--requests", str(requests), "--door", door,
               "--concurrency", str(concurrency),
               *(["--http"] if http else []), *(["--bare"] if bare else []),
               *(["--stream"] if stream else [])]
    child = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout.readline().strip() == "READY", "the child did not start"
        subprocess.run(["callgrind_control", "-i", "on", str(child.pid)], check=True,
                       capture_output=True)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "DONE"
        subprocess.run(["callgrind_control", "-i", "off", str(child.pid)], check=True,
                       capture_output=True)
        child.stdin.write("exit\n")
        child.stdin.flush()
        child.wait(600)
    finally:
        if child.poll() is None:
            child.kill()
    counted = callgrind_totals(out)
    shutil.rmtree(out.parent, ignore_errors=True)
    return counted


def callgrind_totals(out: Path) -> tuple[int, int]:
    """What callgrind wrote to `out` (a file per thread, --separate-threads=yes): the
    instructions of every thread, and of thread 1, the event loop's."""
    total = loop = 0
    for path in out.parent.glob(out.name + "*"):
        # "totals:" sums the cost lines; "summary:" stays 0 when instrumentation was toggled.
        match = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        count = int(match.group(1)) if match else 0
        total += count
        if path.name.endswith("-01"):
            loop += count
    return total, loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose circuit/ is measured (default: this one)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1,
                        help="requests at a time (scripts/bench's load runs 64)")
    parser.add_argument("--stream", action="store_true",
                        help="count only streams (default: JSON, then streams)")
    parser.add_argument("--door", choices=(*DOORS, "all"),
                        help="count this door (or all three) through the fake HTTP upstream "
                             "(default: chat on the in-process mock provider)")
    parser.add_argument("--bare", action="store_true",
                        help="count scripts/bench_bare.py's relay instead (needs --door)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--http", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.requests, args.stream, args.door or "chat", args.http,
                           args.bare, args.concurrency))
        return
    if args.bare and args.door is None:
        parser.error("--bare relays over HTTP: give --door")
    if args.concurrency < 1 or args.requests % args.concurrency:
        parser.error("--requests must be a multiple of --concurrency")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt install valgrind)")
    doors = [None] if args.door is None else list(DOORS) if args.door == "all" else [args.door]
    for door in doors:
        for stream in (True,) if args.stream else (False, True):
            total, loop = measure(args.tree, args.requests, stream, door or "chat",
                                  door is not None, args.bare, args.concurrency)
            label = f"{'bare ' if args.bare else ''}{door or 'mock'} " \
                    f"{'stream' if stream else 'json'}"
            print(f"{label:16}  {total / args.requests:>12,.0f} instructions per request, "
                  f"{loop / args.requests:>10,.0f} on the loop's thread ({args.requests} "
                  f"requests, {args.concurrency} at a time, {args.tree})", flush=True)


if __name__ == "__main__":
    main()
