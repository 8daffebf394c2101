"""The request log's lifecycle, on SQLite and PostgreSQL: rollups kept exact by the writer,
usage read from them once rows are pruned, pruning in batches, export in pages."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date

import pytest

from circuit.store import latency_histogram
from circuit.store.base import Store
from circuit.store.export import pages as request_pages
from circuit.store.records import RequestRecord
from circuit.store.reports import RECORD_FIELDS
from circuit.store.retention import Cutoffs, prune
from tests import test_store_contract as contract

# The contract's fixtures: every test here runs on SQLite and on PostgreSQL.
backend, store = contract.backend, contract.store

#: Every day of the records below is a whole past day: reports read them from rollups.
LATER = date(2030, 1, 1)
SINCE = "2026-01-01T00:00:00.000Z"


def _at(month: int, day: int, hour: int = 12) -> str:
    return f"2026-{month:02d}-{day:02d}T{hour:02d}:00:00.000Z"


def _records() -> list[RequestRecord]:
    """Three months of traffic from two keys on two models, a failure, a rejection, an
    unpriced model, and text in some rows."""
    rows = []
    for n in range(60):
        month, day = 9 + n % 3, 1 + n % 28
        rows.append(RequestRecord(
            f"r{n}", _at(month, day, n % 24), "alice" if n % 2 else "bob", "mock",
            "gpt-4o" if n % 3 else "gpt-4o-mini", status_code=200, tokens_input=n,
            tokens_output=2 * n, cost_micros=1000 + n, latency_ms=10.0 + n,
            partial_text="half an answer" if n % 4 == 0 else None))
    rows += [
        RequestRecord("f", _at(10, 5), "alice", "openai", "gpt-4o", status_code=502,
                      status="failed", error_message="upstream said: your prompt …",
                      tokens_input=5, cost_micros=50, latency_ms=900.0),
        RequestRecord("x", _at(10, 6), None, None, "gpt-4o", status_code=401,
                      status="rejected", error_code="invalid_api_key", latency_ms=0.5),
        RequestRecord("u", _at(11, 7), "bob", "mock", "my-model", status_code=200,
                      tokens_input=7, tokens_output=3, latency_ms=20.0),
    ]
    return rows


def _counts(report) -> dict:
    return {g.group: (g.requests, g.failed, g.rejected, g.tokens_in, g.tokens_out,
                      g.cost_micros, g.unpriced) for g in report.groups}


def test_rollups_report_the_same_counts_as_the_rows(store):
    store.insert_requests(_records())
    for by in ("key", "model", "provider", "api", "day"):
        for key in (None, "alice"):
            from_rows = store.usage(since=SINCE, by=by, key=key, today=date(2026, 1, 1))
            from_rollups = store.usage(since=SINCE, by=by, key=key, today=LATER)
            assert _counts(from_rollups) == _counts(from_rows), (by, key)
            assert from_rollups.total.requests == (63 if key is None else 31)


def test_percentiles_from_rollups_are_within_the_histograms_error(store):
    store.insert_requests(_records())
    exact = store.usage(since=SINCE, by="key", today=date(2026, 1, 1))
    binned = store.usage(since=SINCE, by="key", today=LATER)
    for ours, theirs in zip(binned.groups + [binned.total], exact.groups + [exact.total],
                            strict=True):
        for p in ("p50_ms", "p95_ms"):
            if getattr(theirs, p) is None:
                assert getattr(ours, p) is None
            else:
                assert getattr(ours, p) == pytest.approx(
                    getattr(theirs, p), rel=latency_histogram.RELATIVE_ERROR)


def test_usage_survives_pruning_every_row(store):
    store.insert_requests(_records())
    before = store.usage(since=SINCE, by="model", today=LATER)
    assert prune(store, Cutoffs(rows="2027-01-01T00:00:00.000Z", content=None), pause=0)\
        .deleted == 63
    assert store.recent_requests() == []
    after = store.usage(since=SINCE, by="model", today=LATER)
    assert after == before
    assert store.has_requests_from("alice")


def test_a_window_that_starts_inside_a_day_reads_that_day_from_rows(store):
    store.insert_requests([
        RequestRecord("early", _at(9, 1, 1), "alice", status_code=200, cost_micros=1),
        RequestRecord("late", _at(9, 1, 20), "alice", status_code=200, cost_micros=10),
        RequestRecord("next", _at(9, 2, 1), "alice", status_code=200, cost_micros=100),
    ])
    report = store.usage(since=_at(9, 1, 12), today=LATER)
    assert report.total.cost_micros == 110


def test_a_batch_written_again_is_rolled_up_once(store):
    records = _records()[:10]
    store.insert_requests(records)
    store.insert_requests(records + [replace(records[0], record_key="fresh")], again=True)
    report = store.usage(since=SINCE, today=LATER)
    assert report.total.requests == 11
    assert report.total.cost_micros == sum(r.cost_micros for r in records) + 1000


def test_a_journal_chunk_replayed_twice_is_rolled_up_once(store):
    records = _records()[:10]
    store.insert_replayed(records, "host-1-1.jsonl", 100)
    store.insert_replayed(records, "host-1-1.jsonl", 100)
    assert store.usage(since=SINCE, today=LATER).total.requests == 10


def test_the_door_is_recorded_and_grouped(store):
    store.insert_requests([RequestRecord("c", _at(9, 1), "alice", status_code=200),
                           RequestRecord("m", _at(9, 1), "alice", status_code=200,
                                         api="messages")])
    assert {r["request_id"]: r["api"] for r in store.recent_requests()} == {"c": "chat",
                                                                            "m": "messages"}
    for today in (date(2026, 1, 1), LATER):
        report = store.usage(since=SINCE, by="api", today=today)
        assert {g.group: g.requests for g in report.groups} == {"chat": 1, "messages": 1}


def test_rows_there_before_the_rollups_are_backfilled_by_the_migration(backend, store):
    store.insert_requests(_records())
    expected = store.usage(since=SINCE, by="key", today=LATER)
    # As a database from before the rollups: their table gone, their migration not applied.
    older = backend.open()
    older.migrate()
    _run(older, "DROP TABLE request_rollups")
    _run(older, "DELETE FROM circuit_migrations WHERE number = 21")
    older.migrate()
    assert older.usage(since=SINCE, by="key", today=LATER) == expected


def _run(target: Store, sql: str) -> None:
    target._change(sql, [])  # type: ignore[attr-defined]


# -- pruning -----------------------------------------------------------------------------------

def test_pruning_deletes_only_rows_before_the_cutoff_a_batch_at_a_time(store):
    old = [RequestRecord(f"o{n}", _at(9, 1), status_code=200) for n in range(1200)]
    store.insert_requests([*old, RequestRecord("new", _at(9, 2), status_code=200)])
    assert [store.prune_requests(_at(9, 2), 500) for _ in range(4)] == [500, 500, 200, 0]
    assert [r["request_id"] for r in store.recent_requests(limit=10)] == ["new"]


def test_clearing_text_keeps_the_row_and_its_numbers(store):
    store.insert_requests(_records())
    cleared = prune(store, Cutoffs(rows=None, content="2027-01-01T00:00:00.000Z"), batch=7,
                    pause=0).cleared
    assert cleared == 16  # 15 partial answers and one error message
    rows = store.recent_requests(limit=100)
    assert len(rows) == 63
    assert all(r["partial_text"] is None and r["error_message"] is None for r in rows)
    assert {r["request_id"]: r["error_code"] for r in rows}["x"] == "invalid_api_key"
    assert sum(r["cost_micros"] or 0 for r in rows) == sum(r.cost_micros or 0
                                                           for r in _records())


def test_a_dry_run_counts_what_pruning_would_remove(store):
    store.insert_requests(_records())
    assert store.count_prunable(_at(10, 1, 0), _at(12, 1, 0)) == (20, 11)
    assert store.count_prunable(None, None) == (0, 0)
    result = prune(store, Cutoffs(_at(10, 1, 0), _at(12, 1, 0)), pause=0)
    assert (result.deleted, result.cleared) == (20, 11)


def test_processes_pruning_at_once_delete_each_row_once(backend, store):
    store.insert_requests([RequestRecord(f"o{n}", _at(9, 1), status_code=200)
                           for n in range(3000)])
    results: list[int] = []
    lock = threading.Lock()

    def run(target: Store) -> None:
        deleted = prune(target, Cutoffs(_at(9, 2), None), batch=100, pause=0).deleted
        with lock:
            results.append(deleted)

    threads = [threading.Thread(target=run, args=(backend.open(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 3000
    assert store.recent_requests() == []


# -- export ------------------------------------------------------------------------------------

def test_pages_give_every_row_of_the_window_once_in_time_order(store):
    # Many rows share a timestamp: paging must resume after the last id, not the last time.
    records = [RequestRecord(f"s{n}", _at(9, 1 + n % 3), status_code=200) for n in range(50)]
    store.insert_requests([RequestRecord("before", _at(8, 1), status_code=200), *records,
                           RequestRecord("after", _at(9, 10), status_code=200)])
    pages = list(request_pages(store, _at(9, 1, 0), _at(9, 5, 0), page_rows=7))
    assert [len(p) for p in pages] == [7] * 7 + [1]
    rows = [dict(zip(RECORD_FIELDS, row, strict=True)) for page in pages for row in page]
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in records)
    assert rows == sorted(rows, key=lambda r: (r["timestamp"], r["id"]))


def test_pages_of_an_empty_window_are_none(store):
    assert list(request_pages(store, _at(9, 1), _at(9, 2))) == []
