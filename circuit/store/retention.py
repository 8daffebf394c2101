"""Retention: request rows older than `retention_days` are deleted, and the text of rows older
than `content_retention_days` cleared, in small batches with pauses, off the request path.

`prune` does one round and blocks (a thread's work: the CLI's `requests prune`, or the
gateway's `Pruner`). The rollups are never pruned: `circuit usage` and spend history read
them for days whose rows are gone. Budgets read the budget ledger, which retention leaves
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from circuit.store.base import Store
from circuit.store.reports import timestamp_text

log = logging.getLogger("circuit.retention")

#: Rows per batch: each batch is one short transaction (milliseconds of write lock).
BATCH_ROWS = 500
#: Seconds between batches at least; a slow batch is followed by a pause as long as it took,
#: so pruning never takes more than about half of the database's write time.
PAUSE_SECONDS = 0.05
#: The gateway's first round comes this soon after start (or after one interval, if shorter).
FIRST_ROUND_SECONDS = 5.0


@dataclass(frozen=True)
class Cutoffs:
    """Timestamps (text) before which rows are deleted, and text cleared; None: keep."""

    rows: str | None
    content: str | None


def cutoffs(retention_days: float | None, content_retention_days: float | None,
            now: datetime | None = None) -> Cutoffs:
    """The cutoffs of the configured retention, as of `now`."""
    moment = now or datetime.now(UTC)

    def before(days: float | None) -> str | None:
        return None if days is None else timestamp_text(moment - timedelta(days=days))

    rows, content = before(retention_days), before(content_retention_days)
    if rows is not None and content is not None and content < rows:
        content = rows  # text older than the rows goes with them
    return Cutoffs(rows, content)


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    cleared: int
    released_bytes: int


def prune(store: Store, cut: Cutoffs, *, batch: int = BATCH_ROWS,
          pause: float = PAUSE_SECONDS, stop: Callable[[], bool] = lambda: False) -> PruneResult:
    """Delete and clear what `cut` says, a batch at a time, then give the space back."""
    deleted = cleared = 0
    if cut.rows is not None:
        deleted = _in_batches(lambda: store.prune_requests(cut.rows, batch), batch, pause, stop)
    if cut.content is not None:
        cleared = _in_batches(lambda: store.clear_content(cut.content, batch), batch, pause,
                              stop)
    released = store.release_space() if deleted or cleared else 0
    return PruneResult(deleted, cleared, released)


def _in_batches(step: Callable[[], int], batch: int, pause: float,
                stop: Callable[[], bool]) -> int:
    total = 0
    while not stop():
        started = time.monotonic()
        done = step()
        total += done
        if done < batch:
            break
        time.sleep(max(pause, time.monotonic() - started))
    return total


class Pruner:
    """The gateway's pruning rounds: one soon after start, then every `interval` seconds.
    Each round runs in a worker thread; the event loop only waits for it."""

    def __init__(self, store: Store, retention_days: float | None,
                 content_retention_days: float | None, interval: float) -> None:
        self._store = store
        self._days = (retention_days, content_retention_days)
        self._interval = interval
        self._stopping = threading.Event()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        #: Rounds completed, and what they removed in all.
        self.rounds = 0
        self.deleted = 0
        self.cleared = 0

    @property
    def enabled(self) -> bool:
        return any(days is not None for days in self._days)

    async def start(self) -> None:
        if self.enabled:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="circuit-pruner")

    async def stop(self) -> None:
        """End the rounds; a round under way stops after its current batch."""
        if self._task is None:
            return
        self._stopping.set()
        if self._wake is not None:
            self._wake.set()
        await self._task
        self._task = None

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _run(self) -> None:
        await self._sleep(min(FIRST_ROUND_SECONDS, self._interval))
        while not self._stopping.is_set():
            try:
                result = await asyncio.to_thread(prune, self._store, cutoffs(*self._days),
                                                 stop=self._stopping.is_set)
            except Exception:
                log.exception("pruning the request log failed; will retry next round")
            else:
                self.deleted += result.deleted
                self.cleared += result.cleared
                if result.deleted or result.cleared:
                    log.info("retention: %d old request rows deleted, the text of %d cleared, "
                             "%.1f MB given back", result.deleted, result.cleared,
                             result.released_bytes / 1e6)
            self.rounds += 1
            await self._sleep(self._interval)
