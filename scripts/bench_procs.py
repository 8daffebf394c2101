"""The benchmark's processes: the mock upstream, the gateway under test, the load generator, and
what /proc says about their CPU time and memory.

Pinning: the gateway gets core 0 and everything else (mock, load generator, this script, py-spy)
core 1, via `taskset -c N`, when two cores or more are allowed and taskset exists (the first two
allowed cores, to be exact).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The cores this process may use (read before it pins itself): the first for the gateway, the
#: second for everything else.
ALLOWED_CORES = sorted(os.sched_getaffinity(0))
GATEWAY_CORE, LOAD_CORE = (ALLOWED_CORES + [None, None])[:2] if len(ALLOWED_CORES) >= 2 \
    else (None, None)


def can_pin() -> bool:
    return len(ALLOWED_CORES) >= 2 and shutil.which("taskset") is not None


def pinned(cmd: list[str], core: int | None) -> list[str]:
    """`cmd` on one core; with `core=None` on every core, explicitly, since a child would
    otherwise inherit this script's own pinning (to the load core)."""
    if not can_pin():
        return cmd
    cores = str(core) if core is not None else ",".join(map(str, ALLOWED_CORES))
    return ["taskset", "-c", cores, *cmd]


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this script dies, so nothing is left running."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- /proc ---------------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return text[text.rindex(")") + 2:].split()


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (uvicorn's worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, ()))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live pid (children reaped already are in cutime)."""
    times = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
            times[pid] = sum(int(f) for f in fields[11:15]) / CLK_TCK
    return times


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds per thread of one process; the thread whose id is `pid` runs the event loop."""
    times = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return times
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        times[tid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return times


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def wait_for_quiet(max_wait: float, busy_pct: float = 15.0, window: float = 1.0) -> float:
    """Wait (up to `max_wait` s) for a `window` in which the machine is under `busy_pct`% busy;
    returns the busy % last seen, so a noisy run can be flagged."""
    deadline = time.perf_counter() + max_wait
    cores = len(ALLOWED_CORES) or 1
    while True:
        before = machine_busy_seconds()
        time.sleep(window)
        busy = 100 * (machine_busy_seconds() - before) / window / cores
        if busy < busy_pct or time.perf_counter() >= deadline:
            return round(busy, 1)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in kB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[:5]] = int(line.split()[1])
    except OSError:
        pass
    return out


class RssSampler:
    """Samples the summed VmRSS of a process tree in a thread; `peak_kb` is the highest sum."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids = descendants(self.pid)
        ticks = 0
        while not self._stop.is_set():
            if ticks % 20 == 0:
                pids = descendants(self.pid)
            self.peak_kb = max(self.peak_kb,
                               sum(memory_kb(p).get("VmRSS", 0) for p in pids))
            ticks += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- processes -----------------------------------------------------------------------------------

class Mock:
    """The mock upstream (scripts/bench_upstream.py) on a free port."""

    def __init__(self, *, chunks: int = 20, latency_ms: float = 0.0,
                 chunk_interval_ms: float = 0.0, core: int | None = None) -> None:
        cmd = [sys.executable, str(HERE / "bench_upstream.py"), "--port", "0", "--chunks",
               str(chunks), "--latency-ms", str(latency_ms), "--chunk-interval-ms",
               str(chunk_interval_ms)]
        self.proc = subprocess.Popen(pinned(cmd, core), stdout=subprocess.PIPE, text=True,
                                     preexec_fn=die_with_parent)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the mock upstream did not start")
        self.port = json.loads(line)["port"]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


#: The model the Messages door's scenarios ask for (routed to the mock as an Anthropic upstream).
MESSAGES_MODEL = "claude-sonnet-4-5"


class Gateway:
    """`circuit serve` with the OpenAI provider pointed at the mock (and an Anthropic one for
    MESSAGES_MODEL), and its own SQLite file."""

    def __init__(self, workdir: Path, upstream_url: str, key: str, *, workers: int = 1,
                 core: int | None = None, extra_env: dict[str, str] | None = None,
                 wrapper: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        env = {
            "PROVIDER": "openai", "OPENAI_BASE_URL": upstream_url,
            "OPENAI_API_KEY": "sk-bench-upstream", "CIRCUIT_DB_PATH": str(workdir / "circuit.db"),
            # Every protection on, none of them limiting: budget, rate limits (and the breaker,
            # on by default) all do their work on each request.
            "CIRCUIT_API_KEYS": key, "CIRCUIT_DAILY_USD_LIMIT": "1000000",
            "CIRCUIT_DEFAULT_RPM": "1000000000", "CIRCUIT_DEFAULT_TPM": "1000000000000",
            "CIRCUIT_HOST": "127.0.0.1", "CIRCUIT_PORT": str(self.port),
            "CIRCUIT_WORKERS": str(workers),
            **(extra_env or {}),
        }
        workdir.mkdir(parents=True, exist_ok=True)
        # The Messages door's passthrough: claude-* routed to an Anthropic provider on the mock.
        (workdir / "circuit.toml").write_text(
            f'[providers.anthropic]\nkind = "anthropic"\nbase_url = "{upstream_url}"\n'
            'api_key_env = "BENCH_ANTHROPIC_KEY"\n'
            f'[routes]\n"{MESSAGES_MODEL}" = ["anthropic:{MESSAGES_MODEL}"]\n')
        env["BENCH_ANTHROPIC_KEY"] = "sk-ant-bench-upstream"
        circuit = Path(sys.executable).parent / "circuit"
        cmd = [str(circuit)] if circuit.exists() else \
            [sys.executable, "-c", "from circuit.cli.app import main; main()"]
        self._start(workdir, [*wrapper, *cmd, "serve"], env, workers, core)

    def _start(self, workdir: Path, cmd: list[str], env: dict[str, str], workers: int,
               core: int | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.name = workdir.name
        self.startup_s: float | None = None
        self.db_path = workdir / "circuit.db"
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.sent = 0  # chat requests sent to it: every one must have its row
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("CIRCUIT_", "OPENAI_", "ANTHROPIC_")) and k != "PROVIDER"}
        self.log_path = workdir / "gateway.log"
        self._log = self.log_path.open("wb")
        # cwd is the work dir, so no circuit.toml or .env of the checkout is read.
        self.proc = subprocess.Popen(pinned(cmd, core), cwd=workdir, env={**clean, **env},
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        self.shutdown_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return descendants(self.pid)

    def wait_ready(self, timeout: float = 60.0) -> float:
        started = time.perf_counter()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        # With several workers, let each one finish starting up.
                        if self.workers > 1:
                            self._wait_workers(deadline)
                        self.startup_s = round(time.perf_counter() - started, 2)
                        return self.startup_s
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the gateway was not ready in {timeout:g}s:\n{self.log_tail()}")

    def _wait_workers(self, deadline: float) -> None:
        # The first answer came from the first worker up; give the others time to load too.
        while time.perf_counter() < deadline and len(self.pids()) < self.workers + 1:
            time.sleep(0.05)
        time.sleep(1.0)

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def memory_mb(self) -> dict[str, float]:
        """Summed over the process tree: current RSS and the sum of each process's peak."""
        mems = [memory_kb(p) for p in self.pids()]
        return {"rss_mb": round(sum(m.get("VmRSS", 0) for m in mems) / 1024, 1),
                "peak_rss_mb": round(sum(m.get("VmHWM", 0) for m in mems) / 1024, 1)}

    def stop(self, timeout: float = 90.0) -> None:
        """SIGTERM and wait: the record writer drains before the process exits."""
        if self.proc.poll() is None:
            started = time.perf_counter()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
                self.shutdown_s = round(time.perf_counter() - started, 2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def count_rows(self) -> dict:
        """Rows in the `requests` table against the chat requests sent to this gateway."""
        with sqlite3.connect(self.db_path) as conn:
            rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
            by_status = dict(conn.execute(
                "SELECT status, count(*) FROM requests GROUP BY status").fetchall())
        conn.close()
        return {"sent": self.sent, "rows": rows, "by_status": by_status,
                "match": rows == self.sent, "shutdown_s": self.shutdown_s}


class BareRelay(Gateway):
    """scripts/bench_bare.py, the relay with nothing between its parts, on the mock: the floor.
    It keeps no records (`sent` is counted, never checked)."""

    def __init__(self, workdir: Path, upstream_root: str, *, core: int | None = None,
                 wrapper: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        cmd = [sys.executable, str(HERE / "bench_bare.py"), "--port", str(self.port),
               "--upstream", upstream_root]
        self._start(workdir, [*wrapper, *cmd], {}, 1, core)


def run_load(url: str, *, concurrency: int, duration: float, warmup: float, stream: bool,
             key: str | None = None, max_requests: int | None = None, core: int | None = None,
             drain_timeout: float = 30.0, prompt_words: int = 0, on_start=None,
             on_end=None, model: str | None = None) -> dict:
    """Run scripts/bench_load.py; `on_start`/`on_end` are called at the measured window's edges."""
    cmd = [sys.executable, str(HERE / "bench_load.py"), "--url", url, "-c", str(concurrency),
           "-d", str(duration), "-w", str(warmup), "--drain-timeout", str(drain_timeout)]
    if stream:
        cmd.append("--stream")
    if key:
        cmd += ["--key", key]
    if max_requests is not None:
        cmd += ["--max-requests", str(max_requests)]
    if prompt_words:
        cmd += ["--prompt-words", str(prompt_words)]
    if model:
        cmd += ["--model", model]
    proc = subprocess.Popen(pinned(cmd, core), stdout=subprocess.PIPE, text=True,
                            preexec_fn=die_with_parent)
    result = None
    for line in proc.stdout:
        message = json.loads(line)
        if message["event"] == "measure_start" and on_start:
            on_start()
        elif message["event"] == "measure_end" and on_end:
            on_end()
        elif message["event"] == "result":
            result = message["result"]
    if proc.wait() != 0 or result is None:
        raise RuntimeError(f"the load generator failed (exit {proc.returncode})")
    return result
