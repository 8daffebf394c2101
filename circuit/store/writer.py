"""RecordWriter: request records leave the event loop here and reach the store in batches.

The loop only appends to a thread-safe queue (well under a microsecond); one writer thread takes
whatever has gathered, writes it in one transaction, and hands the same batch to the sinks that
follow (the request log). Sinks before the write complete records (local token counts).

A failed write is retried, never dropped. While the database cannot be written, at most
`max_pending` records wait in memory; past that, and at shutdown, they are spilled to the
journal on disk (circuit/store/journal.py), which is replayed into the database as soon as it
takes writes again and at every start. The first failure is logged with its traceback, then a
line every `REPORT_SECONDS` while it lasts, and one when the database is back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from circuit.store.errors import StoreRejected
from circuit.store.journal import JournalFull, RecordJournal
from circuit.store.records import RequestRecord

log = logging.getLogger("circuit.writer")

Sink = Callable[[Sequence[RequestRecord]], None]
_STOP = object()
#: Seconds a batch may wait for more records before it is written. With the time one batch
#: takes to write, this is the flush window: how long a finished request may sit in memory.
FLUSH_LINGER = 0.01
#: Records that may wait in memory for a database that cannot be written, before the journal.
MAX_PENDING = 10_000
#: While writes fail: a log line this often (the first failure has its traceback).
REPORT_SECONDS = 30.0
#: Seconds between retries of a failed write grow to this.
MAX_RETRY_DELAY = 2.0
#: How often a healthy writer looks for journal files left to replay (another process's, or
#: one whose replay failed).
REPLAY_CHECK_SECONDS = 30.0


class RecordWriter:
    """Batches request records into the store from one background thread."""

    def __init__(self, write: Sink, *, before: Sequence[Sink] = (), after: Sequence[Sink] = (),
                 write_again: Sink | None = None,
                 journal: RecordJournal | None = None,
                 replay: Callable[[], int] | None = None,
                 batch_size: int = 1000, retry_delay: float = 0.2,
                 linger: float = FLUSH_LINGER, max_pending: int = MAX_PENDING) -> None:
        self._write = write
        # A batch whose write failed may be in all the same (a commit that failed on a full
        # disk can land): written again only by a write that skips records already in.
        self._write_again = write_again or write
        self._before = tuple(before)
        self._after = tuple(after)
        self._journal = journal
        self._replay = replay  # the journal into the store; returns how many records
        self._batch_size = batch_size
        self._retry_delay = retry_delay
        self._linger = linger
        self._max_pending = max_pending
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._failing_since: float | None = None
        self._reported_at = 0.0
        self._replay_checked_at = time.monotonic()
        self.written = 0
        self.failed_writes = 0
        #: Records spilled to the journal, and replayed from it into the database.
        self.spilled = 0
        self.replayed = 0
        #: Records neither written nor journaled (must stay 0).
        self.dropped = 0
        self.healthy = True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="circuit-record-writer",
                                        daemon=True)
        self._thread.start()

    def submit(self, record: RequestRecord) -> None:
        """Queue one record; safe from any thread, never blocks."""
        self._queue.put(record)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 30.0) -> None:
        """Write (or journal) everything queued so far, then end the thread. Blocking: call
        off the loop."""
        if self._thread is None:
            return
        self._stopping.set()  # a write that fails from now on goes to the journal at once
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.dropped = self._queue.qsize()
            log.error("the record writer did not drain within %ss; %d records not written",
                      timeout, self.dropped)
        self._thread = None

    def _write_each(self, batch: list[RequestRecord]) -> list[RequestRecord]:
        written = []
        for record in batch:
            try:
                self._write_again([record])
                written.append(record)
            except Exception:
                self.dropped += 1
                log.exception("request record %s cannot be stored; dropped", record.request_id)
        self.written += len(written)
        return written

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        if self._journal is not None:
            self._journal.keep_reserve()
        self._replay_journal()
        stopping = False
        while not stopping:
            batch: list[RequestRecord] = []
            stopping = self._take(self._queue.get(), batch)
            if not stopping and len(batch) < self._batch_size and self._linger:
                # A lone record: wait a moment for company, so a quiet gateway commits a few
                # times a second instead of once per request (bounded by the flush window).
                time.sleep(self._linger)
                with contextlib.suppress(queue.Empty):
                    stopping = self._take(self._queue.get_nowait(), batch)
            if batch:
                self._flush(batch)
            self._replay_now_and_then()
        if self._journal is not None:
            self._journal.close_segment()

    def _replay_now_and_then(self) -> None:
        now = time.monotonic()
        if self._journal is None or self._failing_since is not None or \
                now < self._replay_checked_at + REPLAY_CHECK_SECONDS:
            return
        self._replay_checked_at = now
        if self._journal.pending_files():
            self._replay_journal()

    def _take(self, item: object, batch: list[RequestRecord]) -> bool:
        """Add `item` and whatever else is queued to `batch`; True once the stop mark is seen."""
        while True:
            if item is _STOP:
                return True
            batch.append(item)
            if len(batch) >= self._batch_size:
                return False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False

    def _flush(self, batch: list[RequestRecord]) -> None:
        for sink in self._before:
            try:
                sink(batch)
            except Exception:
                log.exception("preparing request records failed")
        stored = self._store(batch)
        for sink in self._after:
            try:
                sink(stored)
            except Exception:
                log.exception("request record sink failed")

    def _store(self, batch: list[RequestRecord]) -> list[RequestRecord]:
        """Write `batch`, retrying while the database cannot take it; past the memory bound
        or at shutdown, journal it instead. Returns the records written or journaled."""
        delay = self._retry_delay
        write = self._write
        while True:
            # The database is failing and this batch must not wait in memory (shutdown, or
            # the bound passed): straight to the journal, without another long wait on a lock.
            journal_failed = False
            if self._failing_since is not None and self._must_not_wait(batch):
                if self._spill(batch):
                    return batch
                journal_failed = True
            try:
                write(batch)
            except Exception as exc:
                if not _transient(exc):
                    # A row the database cannot take (a value out of range): retrying would
                    # wedge every later record behind it. Write the others one by one.
                    return self._write_each(batch)
                write = self._write_again
                self.failed_writes += 1
                self._report_failure()
                if journal_failed or not self._must_not_wait(batch):
                    time.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            self.written += len(batch)
            if self._failing_since is not None:
                self._recovered()
            return batch

    def _must_not_wait(self, batch: list[RequestRecord]) -> bool:
        return self._stopping.is_set() or self.pending + len(batch) > self._max_pending

    def _spill(self, batch: list[RequestRecord]) -> bool:
        """Put `batch` in the journal; False to keep it in memory and retry the database (at
        shutdown, until `stop` gives up and counts what is left as dropped)."""
        if self._journal is None:
            return False
        try:
            self._journal.spill(batch)
        except JournalFull:
            log.exception("journaling %d request records failed; they wait in memory",
                          len(batch))
            return False
        self.spilled += len(batch)
        log.warning("%d request records journaled in %s until the database takes writes "
                    "again (%d so far)", len(batch), self._journal.directory, self.spilled)
        return True

    def _report_failure(self) -> None:
        """Log a failing write: the first with its traceback, then one line now and then."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self._reported_at = now
            self.healthy = False
            log.exception("writing request records failed; retrying (records wait in memory, "
                          "then in the journal)")
        elif now - self._reported_at >= REPORT_SECONDS:
            self._reported_at = now
            log.error("writing request records has failed for %.0f s (%d failed attempts); "
                      "%d records waiting, %d journaled", now - self._failing_since,
                      self.failed_writes, self.pending, self.spilled)

    def _recovered(self) -> None:
        log.warning("the database takes request records again after %.1f s",
                    time.monotonic() - (self._failing_since or time.monotonic()))
        self._failing_since = None
        self.healthy = True
        if self._journal is not None:
            self._journal.close_segment()
            self._journal.keep_reserve()
        self._replay_journal()

    def _replay_journal(self) -> None:
        if self._replay is None:
            return
        try:
            replayed = self._replay()
        except Exception:
            log.exception("replaying the journal of unwritten records failed; it stays on "
                          "disk and is replayed at the next recovery or start")
            return
        if replayed:
            self.replayed += replayed
            log.warning("%d journaled request records replayed into the database", replayed)


def _transient(exc: Exception) -> bool:
    """Whether a failed write may succeed later: anything but data the database refuses."""
    return not isinstance(exc, StoreRejected | OverflowError | ValueError | TypeError)
