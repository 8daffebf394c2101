"""RecordWriter: request records leave the event loop here and reach the store in batches.

The loop only appends to a thread-safe queue (well under a microsecond); one writer thread takes
whatever has gathered, writes it in one transaction, and hands the same batch to the sinks that
follow (the request log). Sinks before the write complete records (local token counts). A
failed write is retried, never dropped; on shutdown the writer drains.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from circuit.store.records import RequestRecord

log = logging.getLogger("circuit.writer")

Sink = Callable[[Sequence[RequestRecord]], None]
_STOP = object()
#: Seconds a batch may wait for more records before it is written. With the time one batch
#: takes to write, this is the flush window: how long a finished request may sit in memory.
FLUSH_LINGER = 0.01


class RecordWriter:
    """Batches request records into the store from one background thread."""

    def __init__(self, write: Sink, *, before: Sequence[Sink] = (), after: Sequence[Sink] = (),
                 batch_size: int = 1000, retry_delay: float = 0.2,
                 linger: float = FLUSH_LINGER) -> None:
        self._write = write
        self._before = tuple(before)
        self._after = tuple(after)
        self._batch_size = batch_size
        self._retry_delay = retry_delay
        self._linger = linger
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed_writes = 0
        #: Records still queued when `stop` gave up waiting (must stay 0).
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
        """Write everything queued so far, then end the thread. Blocking: call off the loop."""
        if self._thread is None:
            return
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
                self._write([record])
                written.append(record)
            except Exception:
                self.dropped += 1
                log.exception("request record %s cannot be stored; dropped", record.request_id)
        return written

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
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
        while True:
            try:
                self._write(batch)
                break
            except Exception as exc:
                if not _transient(exc):
                    # A row the database cannot take (a value out of range): retrying would
                    # wedge every later record behind it. Write the others one by one.
                    batch = self._write_each(batch)
                    break
                # Locked or unreachable database: keep the batch and try again; nothing is lost.
                self.failed_writes += 1
                self.healthy = False
                log.exception("writing %d request records failed; retrying", len(batch))
                time.sleep(self._retry_delay)
        self.healthy = True
        self.written += len(batch)
        for sink in self._after:
            try:
                sink(batch)
            except Exception:
                log.exception("request record sink failed")


#: DB-API errors that say the data is wrong, not the database: no retry will help.
_PERMANENT = {"DataError", "IntegrityError", "ProgrammingError", "InterfaceError",
              "NotSupportedError"}


def _transient(exc: Exception) -> bool:
    if isinstance(exc, OverflowError | ValueError | TypeError):
        return False
    return not any(cls.__name__ in _PERMANENT for cls in type(exc).__mro__)
