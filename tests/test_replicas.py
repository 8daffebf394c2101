"""Two gateway processes on one PostgreSQL database: keys, budgets, breakers and records shared.

Each replica is a real `uvicorn circuit.main:app` subprocess, configured only through its
environment, as it would be behind a load balancer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from circuit.config import declared_settings
from circuit.keys import create_key
from circuit.store.postgres import PostgresStore
from circuit.store.timestamps import utc_now
from tests.support.postgres import fresh_schema

LOAD_KEY = "sk-replica-load-key-0123456789"
LIMIT_USD = 0.002
LIMIT_MICROS = 2_000
BODY = {"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Tell me about replicas sharing one budget"}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Replica:
    """One gateway process; its stderr goes to a file shown when something fails."""

    def __init__(self, name: str, folder: Path, database_url: str) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"{name}.log"
        own = {f.metadata["env"] for f in declared_settings()}
        env = {k: v for k, v in os.environ.items() if k not in own}
        env.update(CIRCUIT_DATABASE_URL=database_url, PROVIDER="mock",
                   CIRCUIT_API_KEYS=LOAD_KEY, CIRCUIT_DAILY_USD_LIMIT=str(LIMIT_USD),
                   CIRCUIT_LOG_LEVEL="warning", CIRCUIT_DB_PATH=str(folder / "unused.db"))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "circuit.main:app", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning", "--no-access-log",
                 # Longer than any stall of a loaded machine: a kept-alive connection closed
                 # by the server as the client reuses it is a ReadError no gateway can prevent.
                 "--timeout-keep-alive", "60"],
                env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n"
                                     f"{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops a replica; the gateway drains and exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def post(self, key: str) -> httpx.Response:
        return httpx.post(self.url + "/v1/chat/completions", json=BODY, timeout=10,
                          headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture(scope="module")
def replicas(database_url, tmp_path_factory) -> Iterator[tuple[Replica, Replica]]:
    folder = tmp_path_factory.mktemp("replicas")
    # Started together, so both migrate the empty schema at once (the advisory lock's job).
    pair = (Replica("replica-a", folder, database_url), Replica("replica-b", folder,
                                                                database_url))
    try:
        for replica in pair:
            replica.wait_ready()
        yield pair
    finally:
        for replica in pair:
            replica.stop()


@pytest.fixture
def store(database_url) -> Iterator[PostgresStore]:
    store = PostgresStore(database_url)
    yield store
    store.close()


def _within(seconds: float, predicate) -> bool:
    """Whether `predicate()` came to hold within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_key_added_or_revoked_through_the_database_reaches_every_replica(replicas, store):
    a, b = replicas
    secret = create_key(store, "added-live", daily_limit_usd=1.0)
    # Each replica polls the keys table twice a second, on its own.
    assert _within(2.5, lambda: (a.post(secret).status_code, b.post(secret).status_code)
                   == (200, 200)), "a new key did not work on both replicas within 2.5 s"
    store.update_key("added-live", revoked_at=utc_now())
    assert _within(2.5, lambda: (a.post(secret).status_code, b.post(secret).status_code)
                   == (401, 401)), "a revoked key still worked after 2.5 s"


def test_breaker_commands_reach_every_replica_and_status_shows_both(replicas, store):
    a, b = replicas
    secret = create_key(store, "breaker-probe", daily_limit_usd=1.0)
    assert _within(5.0, lambda: a.post(secret).status_code == b.post(secret).status_code == 200)
    store.add_breaker_command("mock", "open")
    try:
        assert _within(2.5, lambda: a.post(secret).status_code == b.post(secret).status_code
                       == 503), "an operator's open did not reach both replicas"
        holders = lambda: {s.holder for s in store.breaker_states()  # noqa: E731
                           if s.provider == "mock" and s.state == "open"}
        assert _within(5.0, lambda: len(holders()) == 2), store.breaker_states()
        events = store.breaker_events("mock")
        assert {e.holder for e in events if e.to_state == "open"} == holders()
    finally:
        store.add_breaker_command("mock", "reset")
    assert _within(5.0, lambda: a.post(secret).status_code == b.post(secret).status_code == 200)


async def _load(replicas: tuple[Replica, Replica], count: int) -> dict[str, tuple[int, str]]:
    """`count` requests with one key, alternating replicas, 64 at a time: id -> (status, code)."""
    gate = asyncio.Semaphore(64)
    outcomes: dict[str, tuple[int, str]] = {}

    async def one(client: httpx.AsyncClient, n: int) -> None:
        request_id = f"load-{n}-{uuid.uuid4().hex[:8]}"
        async with gate:
            response = await client.post(
                replicas[n % 2].url + "/v1/chat/completions", json=BODY,
                headers={"Authorization": f"Bearer {LOAD_KEY}", "x-request-id": request_id})
        code = response.json().get("error", {}).get("code", "") if response.status_code != 200 \
            else ""
        outcomes[request_id] = (response.status_code, code)

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=128)) as client:
        await asyncio.gather(*(one(client, n) for n in range(count)))
    return outcomes


def test_concurrent_load_on_both_replicas_never_passes_the_shared_daily_limit(replicas,
                                                                            database_url):
    sent = asyncio.run(_load(replicas, 400))
    codes = [code for _, code in sent.values()]
    for replica in replicas:
        # uvicorn shuts down gracefully, then re-raises the signal: exit status -SIGTERM.
        assert replica.stop() in (0, -signal.SIGTERM), replica.output()
        assert "Traceback" not in replica.output(), replica.output()

    with psycopg.connect(database_url) as conn:
        rows = dict(conn.execute(
            "SELECT request_id, count(*) FROM requests WHERE request_id LIKE 'load-%' "
            "GROUP BY request_id").fetchall())
        spent = conn.execute("SELECT coalesce(sum(cost_micros), 0) FROM requests "
                             "WHERE key_name = 'config-1'").fetchone()[0]
        granted = conn.execute("SELECT coalesce(sum(granted_micros), 0) FROM budget_ledger "
                               "WHERE key_name = 'config-1'").fetchone()[0]

    assert rows == dict.fromkeys(sent, 1), "every request sent has exactly one record"
    ok, refused = codes.count(""), codes.count("quota_exceeded")
    assert ok + refused == len(sent), sorted(set(codes))
    assert ok > 50 and refused > 50, (ok, refused)
    assert 0 < spent <= LIMIT_MICROS
    # Both replicas gave their unused leases back on SIGTERM: the ledger holds what was spent.
    assert granted == spent
