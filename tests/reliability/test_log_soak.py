"""A bounded soak of the request log under retention: the SQLite file stops growing after the
first prune, start-up stays as fast, and the rollups keep every request's totals.

Records go through the real RecordWriter thread into the store (not through HTTP, to stay
fast) on a simulated clock: one round of records per simulated minute, with retention of
`RETENTION_MINUTES` for rows and one minute for their text, pruned after each round as the
gateway's pruner would. CIRCUIT_LOG_SOAK_REQUESTS sets the size: 40,000 by default (a few
seconds), 200,000 for the full soak.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta

from circuit.store import sqlite_space
from circuit.store.records import RequestRecord
from circuit.store.reports import timestamp_text
from circuit.store.retention import Cutoffs, prune
from circuit.store.sqlite import SQLiteStore
from circuit.store.writer import RecordWriter

REQUESTS = int(os.environ.get("CIRCUIT_LOG_SOAK_REQUESTS", "40000"))
ROUNDS = 20
RETENTION_MINUTES = 4
START = datetime(2026, 1, 1, tzinfo=UTC)


def _round(n: int, size: int) -> list[RequestRecord]:
    minute = START + timedelta(minutes=n)
    return [RequestRecord(
        f"soak-{n}-{i}", timestamp_text(minute + timedelta(seconds=60 * i / size)), "soak",
        "mock", "gpt-4o-mini", status_code=200, tokens_input=120, tokens_output=40,
        cost_micros=30, latency_ms=50.0 + i % 200,
        partial_text="a partial answer " * 12 if i % 10 == 0 else None) for i in range(size)]


def _start_up_seconds(path) -> float:
    started = time.perf_counter()
    store = SQLiteStore(path)
    store.migrate()
    store.close()
    return time.perf_counter() - started


def test_the_file_stays_flat_under_retention_and_the_rollups_keep_everything(tmp_path):
    path = tmp_path / "circuit.db"
    store = SQLiteStore(path)
    store.migrate()
    first_start_up = _start_up_seconds(path)
    writer = RecordWriter(store.insert_requests)
    writer.start()
    size = REQUESTS // ROUNDS
    sizes, deleted = [], 0
    try:
        for n in range(ROUNDS):
            for record in _round(n, size):
                writer.submit(record)
            deadline = time.monotonic() + 120
            while writer.written < (n + 1) * size and time.monotonic() < deadline:
                time.sleep(0.01)
            assert writer.written == (n + 1) * size
            now = START + timedelta(minutes=n + 1)
            result = prune(store, Cutoffs(
                timestamp_text(now - timedelta(minutes=RETENTION_MINUTES)),
                timestamp_text(now - timedelta(minutes=1))))
            deleted += result.deleted
            sizes.append(sqlite_space.file_bytes(path))
    finally:
        writer.stop()

    steady = sizes[RETENTION_MINUTES:]  # from the first round with rows to prune
    print(f"\n{REQUESTS:,} requests: file sizes (MB) per round "
          f"{[round(s / 1e6, 1) for s in sizes]}")
    assert max(steady) <= steady[0] * 1.25, "the file kept growing after the first prune"
    assert deleted == (ROUNDS - RETENTION_MINUTES) * size
    assert len(store.recent_requests(limit=REQUESTS)) == RETENTION_MINUTES * size

    # What was pruned is still reported, from the rollups.
    report = store.usage(since=timestamp_text(START), today=date(2030, 1, 1))
    assert report.total.requests == ROUNDS * size
    assert report.total.cost_micros == ROUNDS * size * 30

    # Start-up does the same work as at the beginning (no migration, no VACUUM): bounded
    # by 10x the first start, with room for a busy machine.
    last_start_up = _start_up_seconds(path)
    print(f"start-up (open + migrate): {first_start_up * 1000:.1f} ms at first, "
          f"{last_start_up * 1000:.1f} ms at the end")
    assert last_start_up < max(10 * first_start_up, 0.5)
