"""RecordJournal and the writer: records the database cannot take wait on disk, bounded in
memory, and reach the database exactly once when it takes writes again."""

from __future__ import annotations

import fcntl
import threading
import time

import pytest

from circuit.store.journal import RecordJournal
from circuit.store.records import RequestRecord
from circuit.store.sqlite import SQLiteStore
from circuit.store.writer import RecordWriter


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "circuit.db")
    store.migrate()
    yield store
    store.close()


def _record(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", timestamp="2026-12-01T00:00:00.000Z",
                         key_name="k", model="gpt-4o-mini", status_code=200, tokens_input=i,
                         cost_micros=i, stream=bool(i % 2), partial_text="naïve ✓")


def _ids(store) -> list[str]:
    return sorted(r["request_id"] for r in store.recent_requests(limit=100_000))


def _replay(journal, store) -> int:
    return journal.replay(store.insert_replayed, store.journal_offset)


class Switch:
    """A write that fails ("database is locked") until it is turned on."""

    def __init__(self, store) -> None:
        self.store, self.on, self.attempts = store, False, 0

    def __call__(self, records) -> None:
        self.attempts += 1
        if not self.on:
            raise RuntimeError("database is locked")
        self.store.insert_requests(records)


def _wait(predicate, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_spilled_records_are_replayed_whole(tmp_path, store):
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    journal.spill([_record(i) for i in range(5)])
    journal.close_segment()
    assert _replay(journal, store) == 5
    rows = {r["request_id"]: r for r in store.recent_requests(limit=10)}
    assert rows["r3"]["tokens_input"] == 3 and rows["r3"]["partial_text"] == "naïve ✓"
    assert rows["r3"]["stream"] == 1 and rows["r3"]["cost_usd"] == 0.000003
    assert journal.pending_files() == []


def test_a_replay_is_never_applied_twice(tmp_path, store):
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    journal.spill([_record(i) for i in range(3)])
    journal.close_segment()
    path = journal.pending_files()[0]
    kept = path.read_bytes()
    assert _replay(journal, store) == 3
    path.write_bytes(kept)  # as if the process died after the commit, before the delete
    assert _replay(journal, store) == 0
    assert _ids(store) == ["r0", "r1", "r2"]


def test_a_replay_cut_short_resumes_where_it_stopped(tmp_path, store, monkeypatch):
    import circuit.store.journal as journal_module

    monkeypatch.setattr(journal_module, "REPLAY_CHUNK", 2)
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    journal.spill([_record(i) for i in range(5)])
    journal.close_segment()
    calls = []

    def failing_after_one_chunk(records, file, offset):
        if calls:
            raise RuntimeError("database is locked")
        calls.append(1)
        store.insert_replayed(records, file, offset)

    with pytest.raises(RuntimeError):
        journal.replay(failing_after_one_chunk, store.journal_offset)
    assert _ids(store) == ["r0", "r1"]
    assert _replay(journal, store) == 3
    assert _ids(store) == [f"r{i}" for i in range(5)]


def test_a_half_written_last_line_is_not_a_record(tmp_path, store):
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    journal.spill([_record(1)])
    journal.close_segment()
    path = journal.pending_files()[0]
    path.write_bytes(path.read_bytes() + b'{"request_id": "r2", "times')  # killed mid-write
    assert _replay(journal, store) == 1
    assert _ids(store) == ["r1"]


def test_a_file_a_live_process_still_writes_is_left_alone(tmp_path, store):
    writer_journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    writer_journal.spill([_record(1)])  # its segment stays open and locked
    other = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    assert _replay(other, store) == 0
    writer_journal.close_segment()
    assert _replay(other, store) == 1


def test_a_file_locked_elsewhere_is_skipped(tmp_path, store):
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    journal.spill([_record(1)])
    journal.close_segment()
    with open(journal.pending_files()[0], "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert _replay(journal, store) == 0
    assert _replay(journal, store) == 1


def test_the_reserve_is_allocated_and_kept(tmp_path):
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=64 * 1024)
    journal.keep_reserve()
    assert (tmp_path / "journal" / "reserve").stat().st_size == 64 * 1024


def test_the_writer_spills_past_its_memory_bound_and_replays_once_the_database_is_back(
        tmp_path, store):
    write = Switch(store)
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    writer = RecordWriter(write, journal=journal, replay=lambda: _replay(journal, store),
                          max_pending=10, batch_size=5, retry_delay=0.01, linger=0)
    writer.start()
    try:
        for i in range(60):
            writer.submit(_record(i))
        assert _wait(lambda: writer.spilled >= 40), writer.spilled
        assert writer.pending <= 10 + 5, "no more than the bound waits in memory"
        assert not writer.healthy
        write.on = True
        assert _wait(lambda: len(_ids(store)) == 60)
    finally:
        writer.stop()
    assert _ids(store) == sorted(f"r{i}" for i in range(60))
    assert writer.replayed == writer.spilled and writer.healthy and writer.dropped == 0


def test_the_writer_journals_what_it_holds_at_shutdown_without_waiting_for_the_database(
        tmp_path, store):
    write = Switch(store)
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    writer = RecordWriter(write, journal=journal, retry_delay=0.01)
    writer.start()
    for i in range(20):
        writer.submit(_record(i))
    assert _wait(lambda: write.attempts >= 1)
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    stopper.join(20)
    assert not stopper.is_alive(), "stop returned although the database never came back"
    assert writer.spilled == 20 and writer.dropped == 0
    assert _replay(RecordJournal(tmp_path / "journal", reserve_bytes=0), store) == 20


def test_the_writer_replays_a_journal_left_by_an_earlier_process_on_start(tmp_path, store):
    earlier = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    earlier.spill([_record(i) for i in range(3)])
    earlier.close_segment()
    journal = RecordJournal(tmp_path / "journal", reserve_bytes=0)
    writer = RecordWriter(store.insert_requests, journal=journal,
                          replay=lambda: _replay(journal, store))
    writer.start()
    writer.stop()
    assert _ids(store) == ["r0", "r1", "r2"] and writer.replayed == 3
