"""Instructions per request, counted by valgrind's callgrind: a measure that a busy machine does
not move (the same binary and inputs give the same count), for comparing two versions of the
gateway side by side where timings are noise.

    .venv/bin/python scripts/bench_instructions.py                 this tree
    .venv/bin/python scripts/bench_instructions.py --tree /tmp/old  another checkout, same venv

The gateway app is built in-process on the mock provider (a budget, rate limits and the SQLite
record writer on) and driven through ASGI directly, so what is counted is Circuit's own work
per request — the flow, the exchange, accounting, the relay, the writer thread — not a server's
or a client's. Instrumentation is switched on only around the measured requests.
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


def _scope(raw: bytes) -> dict:
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions",
            "headers": [(b"authorization", f"Bearer {KEY}".encode()),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(raw)).encode())],
            "query_string": b"", "scheme": "http", "server": ("bench", 80),
            "client": ("bench", 1), "root_path": ""}


async def _one(app, raw: bytes) -> None:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()
        return {}

    async def send(message: dict) -> None:
        return None

    await app(_scope(raw), receive, send)


async def _child(requests: int, stream: bool) -> None:
    from circuit.config import load_settings
    from circuit.gateway.app import create_app

    folder = Path(tempfile.mkdtemp(prefix="circuit-ir-"))
    settings = load_settings(environ={
        "CIRCUIT_DB_PATH": str(folder / "circuit.db"), "CIRCUIT_API_KEYS": KEY,
        "CIRCUIT_LOG_LEVEL": "warning", "CIRCUIT_DEFAULT_RPM": "1000000",
        "CIRCUIT_DEFAULT_TPM": "100000000", "CIRCUIT_DAILY_USD_LIMIT": "1000"}, cwd=folder)
    app = create_app(settings)
    gateway = app.state.gateway
    raw = BODY + (b', "stream": true}' if stream else b"}")
    await gateway.start()
    try:
        for _ in range(100):  # warm: leases taken, memos filled, code paths compiled
            await _one(app, raw)
        await asyncio.sleep(0.2)
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for _ in range(requests):
            await _one(app, raw)
        while gateway.writer.pending:  # noqa: ASYNC110 - polls a count; the writer counts too
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        print("DONE", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    finally:
        await gateway.stop()
        shutil.rmtree(folder, ignore_errors=True)


def measure(tree: Path, requests: int, stream: bool) -> int:
    """Instructions callgrind counted for `requests` requests, all threads."""
    out = Path(tempfile.mkdtemp(prefix="circuit-cg-")) / "callgrind.out"
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}", sys.executable, __file__, "--child",
               "--requests", str(requests), *(["--stream"] if stream else [])]
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
    total = 0
    for path in out.parent.glob(out.name + "*"):
        # "totals:" sums the cost lines; "summary:" stays 0 when instrumentation was toggled.
        match = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        total += int(match.group(1)) if match else 0
    shutil.rmtree(out.parent, ignore_errors=True)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose circuit/ is measured (default: this one)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.requests, args.stream))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt install valgrind)")
    for stream in (False, True):
        count = measure(args.tree, args.requests, stream)
        print(f"{'stream' if stream else 'json':6}  {count / args.requests:>12,.0f} "
              f"instructions per request ({args.requests} requests, {args.tree})", flush=True)


if __name__ == "__main__":
    main()
