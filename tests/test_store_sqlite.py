"""The SQLite store and the record writer: migrations, batches, nothing lost."""

from __future__ import annotations

import threading

import pytest

from circuit.store.base import KeyExists, KeyNotFound
from circuit.store.migrations import MIGRATIONS
from circuit.store.records import KeyRow, RequestRecord
from circuit.store.sqlite import SQLiteStore, utc_now
from circuit.store.writer import RecordWriter


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "data" / "circuit.db")
    store.migrate()
    yield store
    store.close()


def _record(n: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{n}", timestamp=utc_now(), status_code=200,
                         cost_micros=n)


def test_migrate_creates_the_folder_and_applies_every_migration_once(store):
    store.migrate()
    assert store.applied_migrations() == [m.number for m in MIGRATIONS]
    assert store.path.is_file()


def test_database_uses_write_ahead_logging(store):
    assert store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_records_with_the_same_request_id_are_all_kept(store):
    store.insert_requests([_record(1), _record(1)])
    assert len(store.find_requests("r1")) == 2


def test_cost_usd_is_derived_from_micro_dollars(store):
    store.insert_requests([RequestRecord("r", utc_now(), cost_micros=1_234_567)])
    assert store.find_requests("r")[0]["cost_usd"] == pytest.approx(1.234567)


def test_writer_drains_everything_queued_when_stopped(store):
    writer = RecordWriter(store.insert_requests, batch_size=50)
    writer.start()
    for n in range(1000):
        writer.submit(_record(n))
    writer.stop()
    assert len(store.recent_requests(limit=5000)) == 1000
    assert writer.written == 1000


def test_writer_keeps_a_batch_whose_write_failed_and_retries_it(store):
    failures = {"left": 2}

    def flaky_write(records):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database is locked")
        store.insert_requests(records)

    writer = RecordWriter(flaky_write, retry_delay=0.01)
    writer.start()
    writer.submit(_record(1))
    writer.stop()
    assert writer.failed_writes == 2
    assert len(store.find_requests("r1")) == 1


def test_writer_passes_each_written_batch_to_the_sinks_after_it(store):
    seen = []
    done = threading.Event()

    def sink(batch):
        seen.extend(r.request_id for r in batch)
        done.set()

    writer = RecordWriter(store.insert_requests, after=[sink])
    writer.start()
    writer.submit(_record(7))
    assert done.wait(5)
    writer.stop()
    assert seen == ["r7"]


def test_adding_a_key_twice_is_refused(store):
    store.add_key(KeyRow("ci", "hash1", "sk-circuit-ab"))
    with pytest.raises(KeyExists):
        store.add_key(KeyRow("ci", "hash2", "sk-circuit-cd"))


def test_every_key_change_moves_the_fingerprint(store):
    store.add_key(KeyRow("ci", "hash1", "sk-circuit-ab"))
    seen = {store.keys_fingerprint()}
    for rpm in (1, 2, 3):
        store.update_key("ci", rpm=rpm)
        seen.add(store.keys_fingerprint())
    assert len(seen) == 4


def test_updating_an_unknown_key_raises(store):
    with pytest.raises(KeyNotFound):
        store.update_key("nobody", rpm=1)


def test_a_key_name_of_the_configured_keys_cannot_be_taken(store):
    from circuit.keys import InvalidKeyName, create_key

    with pytest.raises(InvalidKeyName):
        create_key(store, "config-1")
    with pytest.raises(InvalidKeyName):
        create_key(store, "has space")
