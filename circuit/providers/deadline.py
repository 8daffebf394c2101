"""Deadline: `asyncio.timeout` for the hot path, with one timer per event loop, not per wait.

Every upstream call waits under a timeout (its first byte), and a stream once more for each
read (its idle timeout): `asyncio.timeout` makes and cancels a timer handle each time (~4.9 µs
under uvloop), so a paced stream paid it per event. Here a wait only stamps its deadline in the
loop's table; one sweep, every `RESOLUTION` seconds while any wait is in the table, cancels the
tasks whose wait has passed its deadline, and the wait raises TimeoutError as
`asyncio.timeout`'s would. A deadline fires up to RESOLUTION late: the timeouts it keeps are
seconds long. Any other cancellation (the client left, shutdown) stays a CancelledError.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from circuit.loop_sweep import LoopSweep, Sweeps

#: Seconds between two sweeps of a loop's waits (how late a deadline may fire).
RESOLUTION = 0.05


class Deadline:
    """`with deadline:` around a wait: TimeoutError if it lasts more than `seconds` (None:
    no bound). One object may bound many waits in turn (a stream's reads), each on its own."""

    __slots__ = ("_seconds", "_task", "_at", "_fired", "_sweep")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._task: asyncio.Task | None = None
        self._at = 0.0
        self._fired = False
        self._sweep: LoopSweep | None = None

    def __enter__(self) -> Deadline:
        if self._seconds is not None:
            sweep = _SWEEPS.of(asyncio.get_running_loop())
            self._task = asyncio.current_task()
            self._at = sweep.loop.time() + self._seconds
            self._sweep = sweep
            sweep.add(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        sweep = self._sweep
        if sweep is None:
            return
        self._sweep = None
        sweep.discard(self)
        task, self._task = self._task, None  # no reference kept past the wait
        if self._fired:
            self._fired = False
            # Ours was the only cancellation asked for: the wait timed out.
            if task.uncancel() == 0 and kind is asyncio.CancelledError:
                raise TimeoutError from None

    def _due(self) -> None:
        self._fired = True
        self._task.cancel()


#: The upstream waits of each loop.
_SWEEPS = Sweeps(RESOLUTION)
