"""Helpers for the reliability suite: a gateway as a real process, a light load generator, and
readers for what the gateway leaves behind (rows, log lines, SSE events).

The subprocess gateway is what signals, SIGKILL, RSS and file-descriptor counts need; tests that
need none of that use `tests.support.gateway_server.GatewayServer` (in a thread) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from circuit.config import declared_settings
from tests.support.gateway_server import CLIENT_KEY

BIN = Path(sys.executable).parent
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
HELLO = [{"role": "user", "content": "Hello from the reliability suite"}]
CHAT = "/v1/chat/completions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused_port() -> socket.socket:
    """A socket bound to a port but not listening: connecting to it is refused, and no one else
    can take the port while the socket is open."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def sse_data(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def is_anthropic_error(body: Any) -> bool:
    """`{"type": "error", "error": {"type", "message"}}` with a non-empty message."""
    if not isinstance(body, dict) or body.get("type") != "error" \
            or not isinstance(body.get("error"), dict):
        return False
    error = body["error"]
    return set(error) == {"type", "message"} and isinstance(error["type"], str) \
        and bool(error["message"])


def is_openai_error(body: Any) -> bool:
    """`{"error": {"message", "type", "code"}}` (and `param` when one is named) with a
    non-empty message."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return False
    error = body["error"]
    return {"message", "type", "code"} <= set(error) <= {"message", "type", "code", "param"} \
        and bool(error["message"])


TRACEBACK = "Traceback (most recent call last)"


def chat_body(*, stream: bool = False, **extra: Any) -> dict:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": HELLO, **extra}
    if stream:
        body["stream"] = True
    return body


def auth(key: str = CLIENT_KEY, request_id: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if request_id is not None:
        headers["x-request-id"] = request_id
    return headers


def raw_exchange(port: int, request: bytes, *, timeout: float = 10.0,
                 then_read: bool = True) -> bytes:
    """Send raw bytes on a new connection and read until the server closes it; b"" when the
    server closed it without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        answer = b""
        try:
            sock.sendall(request)
            if not then_read:
                return b""
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionError:
            pass
        return answer


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one raw HTTP/1.1 answer with a Content-Length."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


# -- rows --------------------------------------------------------------------------------------

def read_rows(db_path: Path, columns: str = "*") -> list[dict]:
    """Every row of `requests` (empty when the database or table is not there yet)."""
    if not db_path.exists():
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT {columns} FROM requests ORDER BY id")]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def wait_for_rows(db_path: Path, request_ids: Iterable[str], *, timeout: float = 10.0,
                  columns: str = "*") -> dict[str, list[dict]]:
    """Rows by request id, once each of `request_ids` has at least one (or the time is up)."""
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout
    while True:
        by_id: dict[str, list[dict]] = {}
        for row in read_rows(db_path, columns):
            by_id.setdefault(row["request_id"], []).append(row)
        if wanted <= by_id.keys() or time.monotonic() > deadline:
            return by_id
        time.sleep(0.05)


def duplicated_ids(rows: Iterable[dict]) -> dict[str, int]:
    """Request ids that have more than one row, with their counts."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["request_id"]] = counts.get(row["request_id"], 0) + 1
    return {rid: n for rid, n in counts.items() if n > 1}


def database_bytes(db_path: Path) -> bytes:
    """The database file with its WAL and shared-memory files: everything SQLite keeps."""
    return b"".join(p.read_bytes() for p in (db_path, Path(f"{db_path}-wal"),
                                              Path(f"{db_path}-shm")) if p.exists())


# -- the gateway as a process ------------------------------------------------------------------

def clean_environment(**settings: Any) -> dict[str, str]:
    """This process's environment without any Circuit setting, plus `settings`."""
    names = {f.metadata["env"] for f in declared_settings()} | {"CIRCUIT_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update({k: str(v) for k, v in settings.items()})
    return env


class GatewayProcess:
    """`circuit serve` in a process of its own, on a free port, with its own database and its
    stderr in a file."""

    def __init__(self, folder: Path, *, serve_args: tuple[str, ...] = (),
                 prefix: Iterable[str] = (),
                 **settings: Any) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = folder / "circuit.db"
        self.stderr_path = folder / "gateway.stderr"
        self.stdout_path = folder / "gateway.stdout"
        env = clean_environment(**{"CIRCUIT_DB_PATH": self.db_path, "CIRCUIT_API_KEYS": CLIENT_KEY,
                                   "CIRCUIT_LOG_LEVEL": "warning", **settings})
        command = [str(BIN / "circuit"), "serve", "--port", str(self.port), *serve_args]
        command = [*prefix, *command]  # e.g. prlimit, to run under other limits
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, env=env, cwd=folder, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL)
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 30.0) -> GatewayProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n"
                                   f"{self.stderr()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not become ready:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit status (negative: the signal that ended it)."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def rows(self, columns: str = "*") -> list[dict]:
        return read_rows(self.db_path, columns)

    # /proc readings of the gateway process (Linux)
    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def fd_count(self, *, live_connections: bool = True) -> int:
        """Open descriptors; with `live_connections=False`, not counting established TCP
        connections (keep-alive pools, which grow to the busiest moment's concurrency)."""
        links = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(FileNotFoundError):
                links.append(os.readlink(f"/proc/{self.pid}/fd/{fd}"))
        if live_connections:
            return len(links)
        live = _established_socket_inodes()
        return sum(1 for link in links if link.removeprefix("socket:[").rstrip("]") not in live)


def _established_socket_inodes() -> set[str]:
    """Inodes of this machine's established TCP sockets (/proc/net/tcp*, state 01)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01":
                    inodes.add(fields[9])
    return inodes


class BenchUpstream:
    """scripts/bench_upstream.py in a process: a fast OpenAI-compatible mock."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "bench_upstream.py"), "--port", "0", *args],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.port = orjson.loads(self.process.stdout.readline())["port"]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# -- a light load generator --------------------------------------------------------------------
# Raw HTTP/1.1 over asyncio streams: a tenth of httpx's CPU per request, so the gateway, not the
# client, is what the machine spends its cores on.

IDLE_REUSE_SECONDS = 2.0


@dataclass(slots=True)
class Outcome:
    request_id: str
    stream: bool
    sent_at: float
    done_at: float | None = None  # time.monotonic() once the whole response was read
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


def _request_bytes(port: int, body: bytes, request_id: str, key: str) -> bytes:
    return (f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"x-request-id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send one request; (status, body, whether the connection may be reused)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        self.last_used = time.monotonic()
        return status, body, headers.get(b"connection") != b"close"


@dataclass
class Load:
    """Sends chat requests (half of them streams, alternating) to a gateway on `port`."""

    port: int
    prefix: str
    key: str = CLIENT_KEY
    max_connections: int = 256
    outcomes: list[Outcome] = field(default_factory=list)
    _idle: list[RawConnection] = field(default_factory=list)
    _open: int = 0

    def _next(self) -> tuple[Outcome, bytes]:
        number = len(self.outcomes)
        stream = number % 2 == 1
        outcome = Outcome(f"{self.prefix}-{number:07d}", stream, time.monotonic())
        self.outcomes.append(outcome)
        body = orjson.dumps(chat_body(stream=stream, max_tokens=16))
        return outcome, _request_bytes(self.port, body, outcome.request_id, self.key)

    async def one(self, connection: RawConnection | None = None) -> RawConnection | None:
        """One request, on `connection` or a pooled one; returns the connection if reusable."""
        outcome, request = self._next()
        pooled = connection is None
        try:
            if connection is None:
                connection = self._take_idle()
            if connection is None:
                if self._open >= self.max_connections:
                    raise RuntimeError("connection limit reached")
                connection = await RawConnection.open(self.port)
                self._open += 1
            status, body, reusable = await connection.exchange(request)
            outcome.status = status
            if status != 200:
                outcome.error = f"status {status}: {body[:200]!r}"
            elif outcome.stream and not body.endswith(b"data: [DONE]\n\n"):
                outcome.error = f"stream without [DONE]: {body[-200:]!r}"
            elif outcome.stream and b'"error"' in body:
                outcome.error = f"stream error event: {body[-300:]!r}"
            outcome.done_at = time.monotonic()
        except (OSError, asyncio.IncompleteReadError, ValueError, RuntimeError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            reusable = False
        if connection is not None and not reusable:
            connection.close()
            if pooled:
                self._open -= 1
            return None
        if pooled and connection is not None:
            self._idle.append(connection)
        return connection

    def _take_idle(self) -> RawConnection | None:
        # Like any careful client, never reuse a connection the server may be closing for being
        # idle (uvicorn's keep-alive timeout is 5 s): such a race is the client's, not the
        # gateway's, and would show as a spurious error.
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.last_used < IDLE_REUSE_SECONDS:
                return connection
            connection.close()
            self._open -= 1
        return None

    async def at_rate(self, rate: float, seconds: float, max_in_flight: int = 64) -> None:
        """Request n starts at n / rate seconds, with at most `max_in_flight` at once: on a
        machine too busy to keep the rate, the load waits rather than opening connection after
        connection (a soak measures drift, not the machine's spare CPU)."""
        start = time.monotonic()
        tasks: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(max_in_flight)
        total = int(rate * seconds)
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(self.one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _: slots.release())
        if tasks:
            await asyncio.gather(*tasks)
        self.close()

    async def closed_loop(self, workers: int, stop: asyncio.Event) -> None:
        """`workers` connections, each sending its next request as soon as one is answered."""

        async def worker() -> None:
            connection: RawConnection | None = None
            while not stop.is_set():
                if connection is None:
                    try:
                        connection = await RawConnection.open(self.port)
                    except OSError:
                        return  # the gateway is gone
                connection = await self.one(connection)

        await asyncio.gather(*(worker() for _ in range(workers)))

    def close(self) -> None:
        """Close the pooled connections (on the loop that opened them)."""
        for connection in self._idle:
            connection.close()
        self._idle.clear()
