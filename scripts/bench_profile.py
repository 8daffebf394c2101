"""Profile the gateway under load with py-spy and rank functions by own (self) time.

py-spy samples the running process from outside (--nonblocking: it never pauses the target);
its raw output is Brendan Gregg's collapsed-stack text, which speedscope.app and flamegraph.pl
both open. Here it is also summed up: own time = samples where the function is the innermost
frame; total time = samples where it is anywhere on the stack.

    python scripts/bench_profile.py --pid 1234 --duration 10 --out /tmp/profile.txt
    python scripts/bench_profile.py --summarise /tmp/profile.txt
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, duration: float, out: Path, *, rate: int = 250, native: bool = False,
           gil: bool = False, core: int | None = None) -> Path:
    """Sample `pid` and its children for `duration` seconds into collapsed stacks at `out`."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (scripts/bench --profile installs it)")
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(duration))),
           "--rate", str(rate), "--nonblocking", "--subprocesses", "--threads",
           "--format", "raw", "--output", str(out)]
    if native:
        cmd.append("--native")
    if gil:
        # Only the thread holding the GIL: what the one Python core actually spends.
        cmd.append("--gil")
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return out


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib") and "/" in tail else tail
    for marker in ("/circuit/", "/scripts/"):
        if marker in path:
            return marker.strip("/") + "/" + path.split(marker, 1)[1]
    return path


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({_short(match['file'])})"


#: The parts the bare relay (scripts/bench_bare.py) is made of too: a sample whose innermost
#: frame is in one of these is the parts' time; any other is Circuit's own work (its code and
#: the libraries only it calls: starlette, prometheus_client, sqlite3, logging, tiktoken ...).
PARTS = ("uvicorn/", "aiohttp/", "asyncio/", "yarl/", "multidict/", "httptools/", "uvloop/",
         "selectors.py", "socket.py", "ssl.py", "threading.py", "queue.py", "concurrent/",
         "propcache/", "frozenlist/")
#: Innermost frames that are waits, not work (py-spy's idle test misses some of these).
WAITS = ("Condition.wait (threading.py)", "Queue.get (queue.py)", "RecordWriter._run (circuit/")


def _part(name: str) -> str:
    """'parts', 'circuit' or 'wait' for an innermost frame's name."""
    if name.startswith(WAITS):
        return "wait"
    where = name.rpartition("(")[2]
    return "parts" if where.startswith(PARTS) else "circuit"


def summarise(path: Path, top: int = 15) -> dict:
    """Own and total samples per function (line numbers merged), samples per thread, and the
    split between the parts' time and Circuit's own work."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # With --threads/--subprocesses the outer frames name the process and thread.
        while frames and frames[0].startswith(("process ", "thread ")):
            if frames[0].startswith("thread "):
                threads[frames[0]] += count
            frames = frames[1:]
        if not frames:
            continue
        samples += count
        names = [_name(f) for f in frames]
        own[names[-1]] += count
        for name in set(names):
            total[name] += count

    def rows(counter: Counter[str]) -> list[dict]:
        return [{"function": name, "samples": n, "pct": round(100 * n / samples, 1)}
                for name, n in counter.most_common(top)] if samples else []

    split: Counter[str] = Counter()
    for name, n in own.items():
        split[_part(name)] += n
    busy = (split["parts"] + split["circuit"]) or 1
    return {"samples": samples, "top_own": rows(own), "top_total": rows(total),
            "threads": [{"thread": t, "samples": n} for t, n in threads.most_common()],
            "split": {"parts_pct": round(100 * split["parts"] / busy, 1),
                      "circuit_pct": round(100 * split["circuit"] / busy, 1),
                      "waits_excluded": split["wait"]},
            "top_circuit": [{"function": name, "samples": n, "pct": round(100 * n / busy, 1)}
                            for name, n in own.most_common() if _part(name) == "circuit"][:top]}


def format_table(summary: dict, key: str = "top_own") -> str:
    title = "own time" if key == "top_own" else "total time"
    lines = [f"  {'#':>2}  {'%':>5}  {'samples':>7}  function ({title}, "
             f"{summary['samples']} samples)"]
    for i, row in enumerate(summary[key], 1):
        lines.append(f"  {i:>2}  {row['pct']:>5.1f}  {row['samples']:>7}  {row['function']}")
    return "\n".join(lines)


def format_split(summary: dict) -> str:
    """The parts' time against Circuit's own, and Circuit's costliest functions."""
    split = summary["split"]
    lines = [f"  the parts (uvicorn, aiohttp, asyncio ...) {split['parts_pct']}%, Circuit's own "
             f"work {split['circuit_pct']}% of busy samples ({split['waits_excluded']} samples "
             "of waiting left out); Circuit's own, costliest first:"]
    lines += [f"      {row['pct']:>5.1f}  {row['function']}" for row in summary["top_circuit"][:10]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/circuit-profile.txt"))
    parser.add_argument("--native", action="store_true", help="include C frames")
    parser.add_argument("--gil", action="store_true", help="only the thread holding the GIL")
    parser.add_argument("--summarise", type=Path, help="only summarise an existing raw file")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    path = args.summarise
    if path is None:
        if args.pid is None:
            parser.error("--pid or --summarise is required")
        path = record(args.pid, args.duration, args.out, native=args.native, gil=args.gil)
    summary = summarise(path, args.top)
    print(format_table(summary, "top_own"))
    print()
    print(format_table(summary, "top_total"))
    print()
    print(format_split(summary))


if __name__ == "__main__":
    main()
