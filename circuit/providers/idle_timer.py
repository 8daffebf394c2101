"""IdleTimer: a stream's bound on each wait for its next read, kept with one timer.

`asyncio.timeout` makes and cancels a timer handle each time it is entered (~4.7 µs in
uvloop), and a paced stream waits once per event: hundreds of times for one answer. Here a wait
only stamps its deadline; one timer per stream, re-armed for the latest deadline when it fires
early, cancels the waiting task once a wait has really lasted `seconds`, and the wait raises
TimeoutError as `asyncio.timeout`'s would. Any other cancellation (the client left, shutdown)
passes through as CancelledError.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class IdleTimer:
    """`with timer:` around one wait: TimeoutError if it lasts more than `seconds`."""

    __slots__ = ("_seconds", "_loop", "_task", "_deadline", "_handle", "_waiting", "_fired")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._deadline = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._waiting = False
        self._fired = False

    def __enter__(self) -> IdleTimer:
        task = asyncio.current_task()
        if task is not self._task:  # the first wait, or one from another task
            self.cancel()
            self._task, self._loop = task, asyncio.get_running_loop()
        loop = self._loop
        self._deadline = loop.time() + self._seconds
        self._waiting = True
        if self._handle is None:
            self._handle = loop.call_at(self._deadline, self._fire)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._waiting = False
        if self._fired:
            self._fired = False
            # Ours was the only cancellation asked for: the wait timed out.
            if self._task.uncancel() == 0 and kind is asyncio.CancelledError:
                raise TimeoutError from None

    def _fire(self) -> None:
        self._handle = None
        if not self._waiting:
            return  # between waits: the next one arms the timer again
        if self._loop.time() < self._deadline:
            self._handle = self._loop.call_at(self._deadline, self._fire)
            return
        self._fired = True
        self._task.cancel()

    def cancel(self) -> None:
        """No more waits: the timer goes (it would keep the task referenced until it fired)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
