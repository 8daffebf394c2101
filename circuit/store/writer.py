"""RecordWriter: request records leave the event loop here and reach the store in batches.

The loop only appends to a thread-safe queue (well under a microsecond); one writer thread takes
whatever has gathered, writes it in one transaction, and hands the same batch to the sinks that
follow (the request log). Sinks before the write complete records (local token counts). A
failed write is retried, never dropped; on shutdown the writer drains.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from circuit.store.records import RequestRecord

log = logging.getLogger("circuit.writer")

Sink = Callable[[Sequence[RequestRecord]], None]
_STOP = object()


class RecordWriter:
    """Batches request records into the store from one background thread."""

    def __init__(self, write: Sink, *, before: Sequence[Sink] = (), after: Sequence[Sink] = (),
                 batch_size: int = 1000, retry_delay: float = 0.2) -> None:
        self._write = write
        self._before = tuple(before)
        self._after = tuple(after)
        self._batch_size = batch_size
        self._retry_delay = retry_delay
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

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            batch: list[RequestRecord] = []
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._flush(batch)

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
            except Exception:
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
