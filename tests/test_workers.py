"""`circuit serve --workers 2` on one SQLite file: budgets stay strict across the workers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx

from circuit.config import declared_settings

KEY = "sk-workers-test-key-0123456789"
BODY = {"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Two workers, one budget"}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_workers_never_spend_past_the_daily_limit_and_record_every_request(tmp_path):
    port = _free_port()
    db = tmp_path / "circuit.db"
    env = {k: v for k, v in os.environ.items()
           if k not in {f.metadata["env"] for f in declared_settings()}}
    env.update(PROVIDER="mock", CIRCUIT_API_KEYS=KEY, CIRCUIT_DAILY_USD_LIMIT="0.002",
               CIRCUIT_DB_PATH=str(db), CIRCUIT_LOG_LEVEL="warning")
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "circuit.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError((tmp_path / "serve.log").read_text())

        async def fire() -> list[int]:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=30) as client:
                async def one(i: int) -> int:
                    response = await client.post(
                        url + "/v1/chat/completions", json=BODY,
                        headers={"Authorization": f"Bearer {KEY}", "x-request-id": f"w-{i}"})
                    return response.status_code
                return await asyncio.gather(*(one(i) for i in range(300)))

        statuses = asyncio.run(fire())
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        log.close()
    assert set(statuses) == {200, 429} and statuses.count(200) >= 20
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*), sum(cost_micros) FROM requests "
                            "WHERE request_id LIKE 'w-%'").fetchone()
        processes = conn.execute("SELECT count(DISTINCT holder) FROM breaker_state").fetchone()[0]
        refused = conn.execute("SELECT count(*) FROM requests WHERE error_code = "
                               "'quota_exceeded'").fetchone()[0]
    assert processes == 2, "two worker processes shared the database"
    assert rows[0] == 300, "every request has its row"
    assert rows[1] <= 2000, f"spent {rows[1]} micro-dollars past a 2,000 limit"
    assert refused == statuses.count(429)
