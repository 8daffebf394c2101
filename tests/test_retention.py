"""Retention at work: the gateway's pruner, and an SQLite file that gives pruned space back."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import openai

from circuit.store import sqlite_space
from circuit.store.records import RequestRecord
from circuit.store.reports import timestamp_text
from circuit.store.retention import Cutoffs, Pruner, cutoffs, prune
from circuit.store.sqlite import SQLiteStore
from tests.support.gateway_server import CLIENT_KEY, GatewayServer


def _ago(days: float) -> str:
    return timestamp_text(datetime.now(UTC) - timedelta(days=days))


def _rows(n: int, at: str, text: str | None = None) -> list[RequestRecord]:
    return [RequestRecord(f"r{i}", at, "alice", "mock", "gpt-4o-mini", status_code=200,
                          partial_text=text, error_message=text) for i in range(n)]


def test_cutoffs_follow_the_settings_and_text_never_outlives_its_row():
    now = datetime(2026, 11, 30, tzinfo=UTC)
    assert cutoffs(90, 7, now) == Cutoffs("2026-09-01T00:00:00.000Z",
                                          "2026-11-23T00:00:00.000Z")
    assert cutoffs(None, None, now) == Cutoffs(None, None)
    assert cutoffs(1, 30, now) == Cutoffs("2026-11-29T00:00:00.000Z",
                                          "2026-11-29T00:00:00.000Z")


def test_the_pruner_deletes_old_rows_and_old_text_soon_after_start(tmp_path):
    store = SQLiteStore(tmp_path / "circuit.db")
    store.migrate()
    store.insert_requests(_rows(1200, _ago(10)) + _rows(3, _ago(3), "words")
                          + _rows(2, _ago(0.01), "words"))

    async def run() -> Pruner:
        pruner = Pruner(store, retention_days=5, content_retention_days=1, interval=0.05)
        await pruner.start()
        for _ in range(600):  # two rounds take 0.1 s; 30 s at most on a busy machine
            if pruner.rounds >= 2:
                break
            await asyncio.sleep(0.05)
        await pruner.stop()
        return pruner

    pruner = asyncio.run(run())
    assert (pruner.deleted, pruner.cleared) == (1200, 3)
    rows = store.recent_requests(limit=100)
    assert len(rows) == 5
    assert sorted(r["partial_text"] or "-" for r in rows) == ["-", "-", "-", "words", "words"]


def test_a_pruner_with_retention_off_never_runs(tmp_path):
    async def run() -> Pruner:
        pruner = Pruner(SQLiteStore(tmp_path / "circuit.db"), None, None, interval=0.01)
        await pruner.start()
        await asyncio.sleep(0.1)
        await pruner.stop()
        return pruner

    assert asyncio.run(run()).rounds == 0


def test_the_gateway_prunes_by_itself_and_records_the_chat_door(tmp_path):
    seeded = SQLiteStore(tmp_path / "circuit.db")
    seeded.migrate()
    seeded.insert_requests(_rows(700, _ago(30)))
    seeded.close()
    server = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_RETENTION_DAYS=7,
                           CIRCUIT_PRUNE_INTERVAL=0.05).start()
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=CLIENT_KEY)
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}])
        deadline = time.monotonic() + 30
        while server.gateway.pruner.deleted < 700 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    rows = SQLiteStore(tmp_path / "circuit.db").recent_requests(limit=1000)
    assert [r["api"] for r in rows] == ["chat"]
    assert server.gateway.pruner.deleted == 700


# -- SQLite files ------------------------------------------------------------------------------

def _auto_vacuum(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA auto_vacuum").fetchone()[0]


def _old_file(path) -> None:
    """A database made before incremental vacuum: auto_vacuum NONE, tables in it."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE filler (x TEXT)")
        conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 1000,)] * 300)


def test_a_new_file_is_made_in_incremental_vacuum_mode(tmp_path):
    SQLiteStore(tmp_path / "circuit.db").migrate()
    assert _auto_vacuum(tmp_path / "circuit.db") == 2


def test_a_small_file_from_before_is_switched_at_start(tmp_path):
    _old_file(tmp_path / "circuit.db")
    assert _auto_vacuum(tmp_path / "circuit.db") == 0
    SQLiteStore(tmp_path / "circuit.db").migrate()
    assert _auto_vacuum(tmp_path / "circuit.db") == 2


def test_a_big_file_from_before_is_left_with_a_warning_until_compacted(tmp_path, caplog):
    path = tmp_path / "circuit.db"
    _old_file(path)
    store = SQLiteStore(path, vacuum_below_bytes=1000)
    with caplog.at_level(logging.WARNING, "circuit.store"):
        store.migrate()
    assert _auto_vacuum(path) == 0
    assert "circuit requests prune --vacuum" in caplog.text
    store.compact()
    assert _auto_vacuum(path) == 2


def test_pruned_space_goes_back_to_the_file_system(tmp_path):
    path = tmp_path / "circuit.db"
    store = SQLiteStore(path)
    store.migrate()
    store.insert_requests(_rows(5000, _ago(30), "x" * 500))
    store.release_space()  # checkpointed: the rows are in the file itself
    full = path.stat().st_size
    result = prune(store, Cutoffs(_ago(7), None), pause=0)
    assert result.deleted == 5000 and result.released_bytes > 0
    assert path.stat().st_size < full / 2
    # The next write starts the WAL over, cut back to its limit.
    store.insert_requests(_rows(1, _ago(0)))
    assert (tmp_path / "circuit.db-wal").stat().st_size <= sqlite_space.WAL_LIMIT_BYTES
