"""The store contract: each behaviour runs against SQLite and against PostgreSQL.

The PostgreSQL half uses a fresh schema per test (tests/support/postgres.py); it skips where no
server answers, and fails instead under CI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date

import pytest

from circuit.config import ConfigError, load_settings
from circuit.store import latency_histogram
from circuit.store.base import KeyExists, KeyNotFound, Store
from circuit.store.errors import NotCircuitDatabase, StoreRejected, StoreUnavailable
from circuit.store.migrations import MIGRATIONS
from circuit.store.postgres import PostgresStore, safe_url
from circuit.store.protection_rows import BreakerEventRow, BreakerStateRow
from circuit.store.records import REQUEST_COLUMNS, KeyRow, RequestRecord, request_row
from circuit.store.reports import RECORD_FIELDS, UsageRow
from circuit.store.select import describe_store, open_store, store_location
from circuit.store.sqlite import SQLiteStore
from circuit.store.timestamps import utc_now
from circuit.store.writer import RecordWriter
from tests.support.postgres import fresh_schema, require_postgres

DAY = "2026-11-20"


class Backend:
    """One database; `open()` gives another store on it, as another process would have."""

    def __init__(self, kind: str, make: Callable[[], Store]) -> None:
        self.kind = kind
        self._make = make
        self._opened: list[Store] = []

    def open(self) -> Store:
        store = self._make()
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path) -> Iterator[Backend]:
    if request.param == "sqlite":
        backend = Backend("sqlite", lambda: SQLiteStore(tmp_path / "data" / "circuit.db"))
        yield backend
        backend.close()
    else:
        with fresh_schema() as url:
            backend = Backend("postgres", lambda: PostgresStore(url))
            yield backend
            backend.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    store = backend.open()
    store.migrate()
    return store


def _record(n: int, **fields) -> RequestRecord:
    return RequestRecord(request_id=f"r{n}", timestamp=utc_now(), status_code=200,
                         cost_micros=n, **fields)


# -- schema ------------------------------------------------------------------------------------

def test_migrate_applies_every_migration_once(store):
    store.migrate()
    assert store.applied_migrations() == [m.number for m in MIGRATIONS]


def test_a_database_exists_only_once_migrated(backend):
    store = backend.open()
    assert not store.exists()
    store.migrate()
    assert store.exists()


def test_replicas_starting_together_migrate_once(backend):
    stores = [backend.open() for _ in range(4)]
    errors = []

    def migrate(store):
        try:
            store.migrate()
        except Exception as exc:  # pragma: no cover - shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stores[0].applied_migrations() == [m.number for m in MIGRATIONS]


# -- request records ---------------------------------------------------------------------------

def test_a_record_reads_back_exactly_as_written(store):
    record = RequestRecord(
        request_id="full", timestamp="2026-11-26T03:44:56.123Z", key_name="ci",
        provider="openai", model="gpt-4o", upstream_model="gpt-4o-2024-08-06", stream=True,
        status_code=502, status="failed", error_code="upstream_error",
        error_message="broke – mid‑stream ✂", tokens_input=1234, tokens_output=56,
        tokens_cached=1000, cost_micros=9_876_543_210, usage_source="local",
        finish_reason="length", latency_ms=1234.5678901, ttfb_ms=0.123456789, attempts=3,
        partial_text="Hello\nwor", attempt_errors='[{"provider": "openai", "status": 502}]')
    store.insert_requests([record])
    (row,) = store.find_requests("full")
    assert set(row) == set(RECORD_FIELDS)
    assert {k: row[k] for k in REQUEST_COLUMNS} == dict(zip(REQUEST_COLUMNS, request_row(record),
                                                            strict=True))
    assert type(row["id"]) is int and row["stream"] == 1
    assert row["cost_usd"] == pytest.approx(9876.54321, abs=1e-9)


def test_records_with_the_same_request_id_are_all_kept(store):
    store.insert_requests([_record(1), _record(1)])
    assert len(store.find_requests("r1")) == 2


def test_an_empty_batch_writes_nothing(store):
    store.insert_requests([])
    assert store.recent_requests() == []


def test_recent_requests_are_newest_first(store):
    store.insert_requests([replace(_record(n), timestamp=f"2026-11-26T00:00:0{n}.000Z")
                           for n in (1, 3, 2)])
    assert [r["request_id"] for r in store.recent_requests(limit=2)] == ["r3", "r2"]


def test_writer_drains_everything_queued_when_stopped(store):
    writer = RecordWriter(store.insert_requests, batch_size=50)
    writer.start()
    for n in range(1000):
        writer.submit(_record(n))
    writer.stop()
    assert len(store.recent_requests(limit=5000)) == 1000


def test_a_follower_by_id_misses_nothing_while_several_writers_commit(backend, store):
    """`requests tail` reads ids after the last it saw; a record committed late with a smaller
    id would be skipped for good. Ids must become visible in increasing order."""
    writers = [backend.open() for _ in range(3)]
    reader = backend.open()
    sent: list[str] = []
    lock = threading.Lock()

    def write(n: int, target: Store) -> None:
        for batch in range(25):
            records = [_record(0) for _ in range(8)]
            records = [replace(r, request_id=f"w{n}-{batch}-{i}") for i, r in enumerate(records)]
            target.insert_requests(records)
            with lock:
                sent.extend(r.request_id for r in records)

    threads = [threading.Thread(target=write, args=(n, w)) for n, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    seen, last = [], 0
    while True:
        running = any(t.is_alive() for t in threads)
        newest = reader.last_request_id()
        if newest > last:
            seen.extend(r["request_id"] for r in reader.requests_between(last, newest))
            last = newest
        if not running:
            break
    assert sorted(seen) == sorted(sent)


# -- keys --------------------------------------------------------------------------------------

def test_keys_read_back_as_written(store):
    store.add_key(KeyRow("ci", "hash1", "sk-circuit-ab", daily_limit_usd=0.7, rpm=60,
                         tpm=10_000, created_at="2026-11-26T00:00:00.000Z"))
    store.add_key(KeyRow("bare", "hash2", "sk-circuit-cd"))
    keys = {row.name: row for row in store.load_keys()}
    assert keys["ci"] == KeyRow("ci", "hash1", "sk-circuit-ab", 0.7, 60, 10_000,
                                "2026-11-26T00:00:00.000Z", None)
    assert keys["bare"].created_at and keys["bare"].daily_limit_usd is None


def test_adding_a_key_with_a_taken_name_or_secret_is_refused(store):
    store.add_key(KeyRow("ci", "hash1", "sk-circuit-ab"))
    with pytest.raises(KeyExists):
        store.add_key(KeyRow("ci", "hash2", "sk-circuit-cd"))
    with pytest.raises(KeyExists):
        store.add_key(KeyRow("other", "hash1", "sk-circuit-ab"))


def test_every_key_change_moves_the_fingerprint(backend, store):
    other_process = backend.open()
    seen = {other_process.keys_fingerprint()}
    store.add_key(KeyRow("ci", "hash1", "sk-circuit-ab"))
    seen.add(other_process.keys_fingerprint())
    for rpm in (1, 2, 3):
        store.update_key("ci", rpm=rpm)
        seen.add(other_process.keys_fingerprint())
    store.update_key("ci", revoked_at=utc_now())
    seen.add(other_process.keys_fingerprint())
    assert len(seen) == 6


def test_update_key_returns_the_changed_row(store):
    store.add_key(KeyRow("ci", "hash1", "sk-circuit-ab", rpm=5))
    row = store.update_key("ci", daily_limit_usd=2.5, rpm=None, revoked_at="2026-11-26T01:00:00.000Z")
    assert (row.daily_limit_usd, row.rpm, row.revoked_at) == (2.5, None,
                                                              "2026-11-26T01:00:00.000Z")
    assert store.load_keys() == [row]


def test_updating_an_unknown_key_or_an_unknown_field_raises(store):
    with pytest.raises(KeyNotFound):
        store.update_key("nobody", rpm=1)
    store.add_key(KeyRow("ci", "hash1", "sk-circuit-ab"))
    with pytest.raises(ValueError):
        store.update_key("ci", key_hash="stolen")


# -- budget leases -----------------------------------------------------------------------------

def test_leases_grant_what_is_wanted_then_the_rest_then_nothing(store):
    assert store.lease_budget("k", DAY, 30, 10, 100) == (30, 30)
    assert store.lease_budget("k", DAY, 30, 10, 100) == (30, 60)
    assert store.lease_budget("k", DAY, 30, 10, 100) == (30, 90)
    assert store.lease_budget("k", DAY, 30, 5, 100) == (10, 100)
    assert store.lease_budget("k", DAY, 30, 1, 100) == (0, 100)
    assert store.granted_budget("k", DAY) == 100


def test_a_lease_smaller_than_the_need_is_refused_and_grants_nothing(store):
    assert store.lease_budget("k", DAY, 80, 80, 100) == (80, 80)
    assert store.lease_budget("k", DAY, 30, 25, 100) == (0, 80)
    assert store.lease_budget("fresh", DAY, 200, 150, 100) == (0, 0)
    assert store.granted_budget("k", DAY) == 80


def test_leases_are_per_key_and_day(store):
    store.lease_budget("a", DAY, 100, 100, 100)
    assert store.lease_budget("b", DAY, 40, 40, 100) == (40, 40)
    assert store.lease_budget("a", "2026-11-21", 40, 40, 100) == (40, 40)
    assert store.granted_budget("a", "2026-11-19") == 0


def test_returned_budget_can_be_leased_again_and_never_goes_below_zero(store):
    store.lease_budget("k", DAY, 100, 100, 100)
    store.return_budget("k", DAY, 30)
    assert store.granted_budget("k", DAY) == 70
    assert store.lease_budget("k", DAY, 50, 10, 100) == (30, 100)
    store.return_budget("k", DAY, 1_000)
    assert store.granted_budget("k", DAY) == 0
    store.return_budget("nobody", DAY, 5)  # nothing leased: nothing happens


def test_concurrent_leases_from_several_processes_never_pass_the_limit(backend, store):
    limit, need = 10_000, 13
    processes = [backend.open() for _ in range(2)]
    grants: list[int] = []
    lock = threading.Lock()

    def lease(target: Store) -> None:
        for _ in range(60):
            granted, total = target.lease_budget("hot", DAY, 97, need, limit)
            assert total <= limit
            if granted:
                with lock:
                    grants.append(granted)

    threads = [threading.Thread(target=lease, args=(p,)) for p in processes for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Every grant was counted exactly once in the ledger, and the ledger stopped at the limit.
    assert sum(grants) == store.granted_budget("hot", DAY)
    assert limit - need < sum(grants) <= limit


# -- breakers ----------------------------------------------------------------------------------

def _state(holder: str, state: str = "closed", calls: int = 0) -> BreakerStateRow:
    return BreakerStateRow("openai", holder, state, None, None, calls, 0, utc_now())


def test_breaker_states_are_one_row_per_provider_and_process(backend, store):
    store.save_breakers([], [_state("a:1"), _state("b:2")])
    other = backend.open()
    opened = BreakerStateRow("openai", "a:1", "open", "2026-11-26T00:00:00.000Z",
                             "2026-11-26T00:00:15.000Z", 10, 9, utc_now())
    other.save_breakers([], [opened])
    states = store.breaker_states()
    assert [s.holder for s in states] == ["a:1", "b:2"]
    assert states[0] == opened


def test_breaker_events_are_kept_newest_first_and_filtered_by_provider(store):
    events = [BreakerEventRow(provider, "h:1", "closed", "open", f"reason {n}", utc_now())
              for n, provider in enumerate(["openai", "anthropic", "openai"])]
    store.save_breakers(events[:2], [])
    store.save_breakers(events[2:], [_state("h:1", "open")])
    assert store.breaker_events() == events[::-1]
    assert store.breaker_events("openai") == [events[2], events[0]]
    assert store.breaker_events(limit=1) == [events[2]]
    assert store.breaker_states()[0].state == "open"


def test_breaker_commands_are_read_after_an_id(store):
    assert store.last_breaker_command_id() == 0
    first = store.add_breaker_command("openai", "open")
    second = store.add_breaker_command("openai", "reset")
    assert second > first and store.last_breaker_command_id() == second
    assert [(c.id, c.action) for c in store.breaker_commands_after(0)] == [(first, "open"),
                                                                         (second, "reset")]
    assert [c.action for c in store.breaker_commands_after(first)] == ["reset"]
    assert store.breaker_commands_after(second) == []


# -- reports -----------------------------------------------------------------------------------

def _report_rows() -> list[RequestRecord]:
    at = lambda day, hour: f"2026-11-{day}T{hour:02d}:00:00.000Z"  # noqa: E731
    return [
        RequestRecord("r1", at(20, 1), "alice", "mock", "gpt-4o-mini", status_code=200,
                      tokens_input=10, tokens_output=20, cost_micros=100, latency_ms=10.0),
        RequestRecord("r2", at(20, 2), "alice", "openai", "gpt-4o", status_code=502,
                      status="failed", tokens_input=5, cost_micros=50, latency_ms=30.0),
        RequestRecord("r3", at(20, 3), "bob", "mock", "gpt-4o-mini", status_code=429,
                      status="rejected", error_code="quota_exceeded", latency_ms=1.0),
        RequestRecord("r4", at(21, 1), "bob", "mock", "my-model", status_code=200,
                      tokens_input=7, tokens_output=3, latency_ms=20.0),
        RequestRecord("r5", at(21, 2), None, None, "gpt-4o", status_code=401,
                      status="rejected", error_code="invalid_api_key", latency_ms=0.5),
        RequestRecord("r6", at(19, 9), "alice", "mock", "gpt-4o-mini", status_code=200,
                      tokens_input=1, tokens_output=1, cost_micros=1000, latency_ms=99.0),
    ]


@pytest.fixture
def reported(store) -> Store:
    store.insert_requests(_report_rows())
    return store


#: `today` for a report read from the rows alone (every day of the fixture is today or later),
#: and for one read from the rollups (every day of the fixture is a whole past day).
SOURCES = {"rows": date(2026, 11, 19), "rollups": date(2030, 1, 1)}


@pytest.fixture(params=SOURCES)
def today(request) -> date:
    return SOURCES[request.param]


def _ms(value: float, today: date):
    """A percentile as the source reports it: exact from rows, within the histogram's
    relative error from rollups."""
    if today == SOURCES["rows"]:
        return value
    return pytest.approx(value, rel=latency_histogram.RELATIVE_ERROR)


def test_usage_by_key_counts_costs_and_latency_percentiles(reported, today):
    report = reported.usage(since="2026-11-20T00:00:00.000Z", by="key", today=today)
    ms = lambda value: _ms(value, today)  # noqa: E731
    assert report.groups == [
        UsageRow("alice", 2, 1, 0, 15, 20, 150, 0, ms(10.0), ms(30.0)),
        UsageRow("bob", 2, 0, 1, 7, 3, 0, 1, ms(20.0), ms(20.0)),
        UsageRow(None, 1, 0, 1, 0, 0, 0, 0, None, None),
    ]
    assert report.total == UsageRow(None, 5, 1, 2, 22, 23, 150, 1, ms(20.0), ms(30.0))


def test_usage_by_day_model_and_provider_within_a_window(reported, today):
    by_day = reported.usage(since="2026-11-19T00:00:00.000Z", until="2026-11-21T00:00:00.000Z",
                            by="day", today=today)
    assert [(g.group, g.requests, g.cost_micros) for g in by_day.groups] == [
        ("2026-11-19", 1, 1000), ("2026-11-20", 3, 150)]
    by_model = reported.usage(since="2026-11-20T00:00:00.000Z", by="model", key="alice",
                              today=today)
    assert [(g.group, g.requests) for g in by_model.groups] == [("gpt-4o-mini", 1),
                                                                ("gpt-4o", 1)]
    by_provider = reported.usage(since="2026-11-20T00:00:00.000Z", by="provider", today=today)
    assert {g.group: g.requests for g in by_provider.groups} == {"mock": 3, "openai": 1,
                                                                 None: 1}


def test_an_empty_window_reports_zeros(reported, today):
    report = reported.usage(since="2030-01-01T00:00:00.000Z", today=today)
    assert report.groups == [] and report.total == UsageRow(None, 0, 0, 0, 0, 0, 0, 0, None,
                                                            None)


def test_spend_and_key_lookups(reported):
    assert reported.spend_by_key("2026-11-20T00:00:00.000Z") == {"alice": 150, "bob": 0,
                                                                 None: 0}
    assert reported.has_requests_from("bob") and not reported.has_requests_from("carol")


def test_the_request_log_by_id(reported):
    assert reported.last_request_id() == 6
    ids = lambda rows: [r["request_id"] for r in rows]  # noqa: E731
    assert ids(reported.latest_requests(2)) == ["r5", "r6"]
    assert ids(reported.latest_requests(2, up_to_id=4)) == ["r3", "r4"]
    assert ids(reported.latest_requests(10, key="alice", status="ok")) == ["r1", "r6"]
    assert ids(reported.requests_between(2, 5)) == ["r3", "r4", "r5"]
    assert ids(reported.requests_between(0, 6, status="rejected")) == ["r3", "r5"]
    record = reported.latest_requests(1)[0]
    assert set(record) == set(RECORD_FIELDS) and record["stream"] is False


def test_writing_a_batch_again_adds_no_second_row(store):
    # A commit that failed on a full disk may have landed: the writer then writes `again`.
    records = [_record(i) for i in range(3)]
    store.insert_requests(records)
    store.insert_requests(records, again=True)
    assert sorted(r["request_id"] for r in store.recent_requests(10)) == sorted(
        r.request_id for r in records)


def test_a_journal_chunk_and_its_offset_commit_together(store):
    assert store.journal_offset("host-1-2.jsonl") == 0
    store.insert_replayed([_record(1), _record(2)], "host-1-2.jsonl", 512)
    assert store.journal_offset("host-1-2.jsonl") == 512
    store.insert_replayed([_record(3)], "host-1-2.jsonl", 800)
    assert store.journal_offset("host-1-2.jsonl") == 800
    assert len(store.recent_requests(10)) == 3


def test_both_stores_give_identical_answers(tmp_path):
    require_postgres()
    sqlite = SQLiteStore(tmp_path / "c.db")
    with fresh_schema() as url:
        postgres = PostgresStore(url)
        try:
            answers = []
            rows = _report_rows()  # the same records (record keys included) into both
            for store in (sqlite, postgres):
                store.migrate()
                store.insert_requests(rows)
                answers.append([
                    *(store.usage(since="2026-11-01T00:00:00.000Z", by=by)
                      for by in ("key", "model", "provider", "day")),
                    store.spend_by_key("2026-11-01T00:00:00.000Z"),
                    store.latest_requests(10), store.requests_between(0, 6),
                    store.recent_requests(10), store.find_requests("r2")])
            assert answers[0] == answers[1]
        finally:
            sqlite.close()
            postgres.close()


# -- choosing the store ------------------------------------------------------------------------

def _settings(tmp_path, **environ):
    return load_settings(environ={"CIRCUIT_DB_PATH": str(tmp_path / "c.db"), **environ},
                         cwd=tmp_path)


@pytest.mark.parametrize(("url", "expected"), [
    (None, ("sqlite", "{tmp}/c.db")),
    ("postgresql://u:p@db.internal:5432/circuit", ("postgres",
                                                   "postgresql://u:p@db.internal:5432/circuit")),
    ("postgres://db/circuit", ("postgres", "postgres://db/circuit")),
    ("sqlite:///data/other.db", ("sqlite", "data/other.db")),
    ("sqlite:////var/lib/circuit.db", ("sqlite", "/var/lib/circuit.db")),
    ("/srv/circuit.db", ("sqlite", "/srv/circuit.db")),
])
def test_the_database_url_chooses_the_store(tmp_path, url, expected):
    environ = {"CIRCUIT_DATABASE_URL": url} if url else {}
    kind, where = store_location(_settings(tmp_path, **environ))
    assert (kind, where) == (expected[0], expected[1].format(tmp=tmp_path))
    store = open_store(_settings(tmp_path, **environ))
    assert isinstance(store, PostgresStore if kind == "postgres" else SQLiteStore)


def test_the_database_url_can_come_from_circuit_toml(tmp_path):
    (tmp_path / "circuit.toml").write_text('database_url = "postgresql://db/circuit"\n')
    assert store_location(load_settings(environ={}, cwd=tmp_path)) == (
        "postgres", "postgresql://db/circuit")


@pytest.mark.parametrize("url", ["mysql://db/circuit", "sqlite://host/path.db"])
def test_an_unusable_database_url_stops_start_up(tmp_path, url):
    with pytest.raises(ConfigError, match="CIRCUIT_DATABASE_URL"):
        _settings(tmp_path, CIRCUIT_DATABASE_URL=url)


def test_the_password_in_a_database_url_is_never_shown(tmp_path):
    settings = _settings(tmp_path, CIRCUIT_DATABASE_URL="postgresql://circuit:s3cret-pw@db/prod")
    assert "s3cret" not in str(settings.describe())
    assert describe_store(settings) == "postgresql://circuit@db/prod"
    assert "s3cret" not in repr(open_store(settings))
    assert safe_url("postgresql://a:b@h:6543/d?sslmode=require") == "postgresql://a@h:6543/d"


def test_an_unreachable_server_fails_at_once_with_its_reason():
    store = PostgresStore("postgresql://circuit:s3cret-pw@127.0.0.1:1/circuit")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as failure:
        store.migrate()
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in str(failure.value) and "refused" in str(failure.value).lower()
    assert "s3cret" not in str(failure.value)


def test_a_closed_store_opens_again_on_use(store):
    store.close()
    assert store.exists()
    store.insert_requests([_record(1)])
    store.close()
    assert len(store.find_requests("r1")) == 1


def test_store_failures_are_typed_whatever_the_database(store):
    # The CLI and the gateway act on these, never on a driver's message text.
    from circuit.store.records import RequestRecord

    with pytest.raises(StoreRejected):
        store.insert_requests([RequestRecord(request_id="big", timestamp="2026-11-20T01:00:00.000Z",
                                             status_code=200, tokens_input=2**70)])


def test_a_database_without_circuits_tables_is_typed_as_such(backend):
    empty = backend.open()  # not migrated
    with pytest.raises(NotCircuitDatabase):
        empty.load_keys()


@pytest.mark.parametrize("implementation", [SQLiteStore, PostgresStore])
def test_each_store_implements_every_method_the_protocol_declares(implementation):
    declared = {name for name, member in vars(Store).items()
                if callable(member) and not name.startswith("_")}
    assert declared - set(dir(implementation)) == set()


def test_typed_errors_keep_a_stores_own_override_of_a_mixins_method():
    from circuit.store.errors import translating

    class Mixin:
        def name(self) -> str:
            return "mixin"

    @translating(lambda exc: None)
    class Own(Mixin):
        def name(self) -> str:
            return "own"

    assert Own().name() == "own"
