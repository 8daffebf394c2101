"""Instructions per request in the server itself: `circuit serve`, or the bare relay, run under
valgrind's callgrind and sent requests over loopback by scripts/bench_load.py, 64 at a time.

    .venv/bin/python scripts/bench_server_instructions.py                  chat JSON, both
    .venv/bin/python scripts/bench_server_instructions.py --door all --stream

scripts/bench_instructions.py counts the app alone, driven through ASGI with the fake upstream
on its own loop: steady, and the way to compare two versions of Circuit's code. This counts
what a deployed gateway's core does — uvicorn and the HTTP protocol, the app, the record
writer's thread — with the mock upstream (scripts/bench_upstream.py) and the load in processes
of their own, as scripts/bench runs them: the count its ratios come from. Under valgrind the
server runs some 50 times slower, so the record writer's batches (and its count a record)
are not quite those of a timed run; the rest is what a timed run does.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_procs as procs  # noqa: E402
from bench_instructions import callgrind_totals  # noqa: E402

KEY = "sk-bench-server-instructions-0123"
#: Each door: its path, and the model it asks for (None: the load's default).
DOORS = {"chat": ("/v1/chat/completions", None),
         "messages": ("/v1/messages", procs.MESSAGES_MODEL),
         "responses": ("/v1/responses", None)}


def measure(target: str, door: str, stream: bool, requests: int, concurrency: int,
            workdir: Path) -> tuple[int, int]:
    """Instructions the server process spent on `requests` requests: all threads, and the
    event loop's thread alone."""
    out = workdir / "callgrind.out"
    wrapper = ("valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
               f"--callgrind-out-file={out}")
    mock = procs.Mock(core=procs.LOAD_CORE)
    server = procs.BareRelay(workdir, f"http://127.0.0.1:{mock.port}", core=procs.GATEWAY_CORE,
                             wrapper=wrapper) if target == "bare" else \
        procs.Gateway(workdir, mock.base_url, KEY, core=procs.GATEWAY_CORE, wrapper=wrapper,
                      extra_env={"CIRCUIT_HEADER_TIMEOUT": "600",
                                 "CIRCUIT_KEEPALIVE_TIMEOUT": "600", "PYTHONHASHSEED": "0"})
    path, model = DOORS[door]

    def load(count: int) -> dict:
        return procs.run_load(server.url + path, concurrency=concurrency, duration=3600,
                              warmup=0, stream=stream, key=KEY, max_requests=count,
                              core=procs.LOAD_CORE, drain_timeout=600, model=model)

    try:
        server.wait_ready(timeout=600)
        load(max(concurrency * 4, 200))  # warm: connections, pools, leases, code paths
        time.sleep(2)
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True,
                       capture_output=True)
        result = load(requests)
        time.sleep(3)  # the record writer's last batch
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], check=True,
                       capture_output=True)
    finally:
        server.stop(timeout=600)
        mock.stop()
    if result["errors_total"]:
        raise SystemExit(f"{result['errors_total']} requests failed: {result['error_kinds']}")
    total, loop = callgrind_totals(out)
    return total // result["completed_total"], loop // result["completed_total"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--door", choices=(*DOORS, "all"), default="chat")
    parser.add_argument("--stream", action="store_true", help="streams (default: JSON)")
    parser.add_argument("--requests", type=int, default=1280)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--target", choices=("both", "bare", "circuit"), default="both")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt install valgrind)")
    doors = list(DOORS) if args.door == "all" else [args.door]
    targets = ("bare", "circuit") if args.target == "both" else (args.target,)
    for door in doors:
        counts = {}
        for target in targets:
            workdir = Path(tempfile.mkdtemp(prefix=f"circuit-sig-{target}-"))
            try:
                counts[target] = measure(target, door, args.stream, args.requests,
                                         args.concurrency, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            total, loop = counts[target]
            print(f"{target:8} {door} {'stream' if args.stream else 'json':6} {total:>12,} "
                  f"instructions per request, {loop:>10,} on the loop's thread "
                  f"({args.requests} requests, {args.concurrency} at a time)", flush=True)
        if len(counts) == 2:
            print(f"         the bare relay's count is {counts['bare'][0] / counts['circuit'][0]:.0%}"
                  " of Circuit's", flush=True)


if __name__ == "__main__":
    main()
