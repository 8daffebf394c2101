"""LoopSweep: things due at a time, on one event loop, checked by one timer instead of a timer
handle each (`loop.call_later` makes and cancels one, ~4.9 µs under uvloop, per wait).

An item is stamped in its loop's table with the time it falls due; one sweep, every `interval`
seconds while the table holds anything, takes out each item whose time has come and calls its
`_due()`. Items leave early with `discard`. An item falls due up to `interval` late. The
upstream timeouts (circuit.providers.deadline) and the client watch
(circuit.gateway.client_watch) each keep one.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Due(Protocol):
    _at: float  # the loop time it falls due

    def _due(self) -> None: ...


class LoopSweep:
    """One loop's items not yet due, and the timer that checks them."""

    __slots__ = ("loop", "items", "_interval", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.items: dict[Due, None] = {}
        self._interval = interval
        self._handle: asyncio.TimerHandle | None = None

    def add(self, item: Due) -> None:
        self.items[item] = None
        if self._handle is None:
            self._handle = self.loop.call_later(self._interval, self._run)

    def discard(self, item: Due) -> None:
        self.items.pop(item, None)

    def _run(self) -> None:
        self._handle = None
        now = self.loop.time()
        for item in [i for i in self.items if i._at <= now]:
            del self.items[item]
            item._due()
        if self.items:
            self._handle = self.loop.call_later(self._interval, self._run)


class Sweeps:
    """The sweep of the loop that asked last: nearly always the only loop there is. A loop
    asking after another gets a sweep of its own; a sweep lives while it has items (its timer
    holds it), and each item leaves the sweep it joined."""

    __slots__ = ("_interval", "_last")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last: LoopSweep | None = None

    def of(self, loop: asyncio.AbstractEventLoop) -> LoopSweep:
        sweep = self._last
        if sweep is None or sweep.loop is not loop:
            sweep = self._last = LoopSweep(loop, self._interval)
        return sweep
