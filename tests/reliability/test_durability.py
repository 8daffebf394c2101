"""SIGKILL under load: what a client was answered is in the database, but for the flush window.

The record writer is one thread that writes a batch as soon as records are queued (no timer), in
one transaction; a JSON request's record is queued before its response is sent, a stream's just
after its last event. So when the process dies at an arbitrary instant, the only answered
requests that can lack a row are those answered within about one batch write before the kill.
This measures that window: a subprocess gateway under closed-loop load (half streams) is killed
with SIGKILL, and each answered request missing from the database is timed against the kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from dataclasses import dataclass

import httpx
import pytest
from aiohttp import web

from tests.fakes.server_thread import ServerThread
from tests.reliability.support import (
    CHAT,
    GatewayProcess,
    Load,
    Outcome,
    auth,
    chat_body,
    duplicated_ids,
    wait_for_rows,
)

WORKERS = 16
#: The kill comes once this many requests were answered (counted, so a busy machine only
#: takes longer to get there), and no sooner than LOAD_SECONDS.
MIN_ANSWERED = 500
LOAD_SECONDS = 2.0
LOAD_LIMIT_SECONDS = 60.0
#: Measured on 2 quiet cores at ~4,800-5,100 req/s with the writer's 10 ms linger: answered at
#: most 21 ms before the kill (up to ~100 answered requests without a row). On 2 cores under a
#: load average of 5 the writer thread waited for a core and 292 ms was seen; the bound is about
#: 50x the quiet measurement, still far short of a writer that loses batches or never writes.
FLUSH_WINDOW_MS = 1000.0


@dataclass
class Killed:
    gateway: GatewayProcess
    outcomes: list[Outcome]
    killed_at: float
    rows: list[dict]

    @property
    def answered(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def missing(self) -> list[Outcome]:
        recorded = {row["request_id"] for row in self.rows}
        return [o for o in self.answered if o.request_id not in recorded]


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Killed:
    gateway = GatewayProcess(tmp_path_factory.mktemp("sigkill"), PROVIDER="mock",
                             CIRCUIT_LOG_LEVEL="info").wait_ready()
    load = Load(gateway.port, "kill")

    async def drive() -> float:
        stop = asyncio.Event()
        clients = asyncio.create_task(load.closed_loop(WORKERS, stop))
        started = time.monotonic()
        await asyncio.sleep(LOAD_SECONDS)
        while sum(o.ok for o in load.outcomes) < MIN_ANSWERED and \
                time.monotonic() - started < LOAD_LIMIT_SECONDS:  # noqa: ASYNC110 - polls a count
            await asyncio.sleep(0.05)
        loaded_for = time.monotonic() - started
        killed_at = time.monotonic()
        os.kill(gateway.pid, signal.SIGKILL)
        stop.set()
        await clients
        return killed_at, loaded_for

    try:
        killed_at, loaded_for = asyncio.run(drive())
        assert gateway.wait(10) == -signal.SIGKILL
    finally:
        gateway.kill()
    result = Killed(gateway, load.outcomes, killed_at, gateway.rows("request_id, status"))
    lags = sorted((killed_at - o.done_at) * 1000 for o in result.missing)
    print(f"\nSIGKILL after {loaded_for:.1f}s at {len(result.answered) / loaded_for:.0f} req/s: "
          f"{len(result.answered)} answered, {len(result.rows)} rows, {len(result.missing)} "
          f"answered without a row, answered at most {max(lags, default=0):.1f} ms before the "
          f"kill")
    return result


def test_load_was_real_before_the_kill(killed):
    assert len(killed.answered) >= MIN_ANSWERED
    assert any(o.stream for o in killed.answered) and any(not o.stream for o in killed.answered)


def test_every_request_answered_before_a_sigkill_has_its_row_but_for_the_flush_window(killed):
    late = {o.request_id: round((killed.killed_at - o.done_at) * 1000, 1)
            for o in killed.missing
            if (killed.killed_at - o.done_at) * 1000 > FLUSH_WINDOW_MS}
    assert late == {}, "answered longer than the flush window before the kill, yet no row"


def test_no_request_has_two_rows_after_a_sigkill(killed):
    assert duplicated_ids(killed.rows) == {}
    assert {row["status"] for row in killed.rows} == {"ok"}


def test_the_database_is_intact_after_a_sigkill(killed):
    conn = sqlite3.connect(killed.gateway.db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_a_gateway_restarted_on_the_killed_database_serves_and_records(killed):
    restarted = GatewayProcess(killed.gateway.folder, PROVIDER="mock").wait_ready()
    try:
        response = httpx.post(restarted.url + CHAT, json=chat_body(),
                              headers=auth(request_id="after-the-kill"), timeout=10)
        assert response.status_code == 200
        assert restarted.terminate() in (0, -signal.SIGTERM)
        rows = restarted.rows("request_id")
    finally:
        restarted.kill()
    assert [r["request_id"] for r in rows].count("after-the-kill") == 1
    assert len(rows) == len(killed.rows) + 1, "the rows written before the kill are all kept"


# -- a record the database cannot take ---------------------------------------------------------

ABSURD_MODEL = "absurd-usage"


async def _usage_reporting_chat(request: web.Request) -> web.Response:
    """An OpenAI-compatible answer whose usage is absurd (past 64 bits) for ABSURD_MODEL."""
    model = (await request.json())["model"]
    prompt = 10**20 if model == ABSURD_MODEL else 12
    return web.json_response({
        "id": "chatcmpl-usage", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello there."}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": 3,
                  "total_tokens": prompt + 3}})


@dataclass
class Poisoned:
    statuses: dict[str, int]
    rows: dict[str, list[dict]]


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory) -> Poisoned:
    """An upstream reports usage SQLite cannot store for one request; then a normal one."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _usage_reporting_chat)
    with ServerThread(app) as upstream:
        gateway = GatewayProcess(tmp_path_factory.mktemp("poison"), PROVIDER="openai",
                                 OPENAI_BASE_URL=upstream.url + "/v1", OPENAI_API_KEY="sk-up",
                                 CIRCUIT_DAILY_USD_LIMIT="off").wait_ready()
        try:
            statuses = {}
            for request_id, model in (("poison", ABSURD_MODEL), ("after-poison", "gpt-4o-mini")):
                statuses[request_id] = httpx.post(
                    gateway.url + CHAT, json=chat_body(model=model),
                    headers=auth(request_id=request_id), timeout=10).status_code
            # Returns once both rows are in; the bound is for a machine busy enough that the
            # writer thread waits seconds for a core (seen: over 3 s).
            rows = wait_for_rows(gateway.db_path, statuses, timeout=30, columns="request_id")
        finally:
            gateway.kill()  # a wedged writer would hold a graceful stop for 30 s
    return Poisoned(statuses, rows)


def test_an_upstream_reporting_absurd_usage_does_not_fail_the_client(poisoned):
    assert poisoned.statuses == {"poison": 200, "after-poison": 200}


def test_a_record_the_database_cannot_take_does_not_stop_later_records(poisoned):
    assert "after-poison" in poisoned.rows


def test_a_request_whose_upstream_reports_absurd_usage_still_has_its_row(poisoned):
    assert len(poisoned.rows.get("poison", [])) == 1
