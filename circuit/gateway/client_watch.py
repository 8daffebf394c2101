"""ClientWatch: notices a client that hangs up while the gateway waits on its answer.

Once a request's body is in, nothing reads its ASGI `receive` until the answer goes out, so a
client that left while the upstream was slow went unnoticed until the first-byte timeout, and
was recorded as the upstream's 504. Watching means awaiting `receive` in a task of its own,
~27,000 instructions a request, a tenth of the gateway's own work on a quick answer: so a
request only stamps itself in its loop's table when its body is in, and one sweep, every
`WATCH_AFTER` seconds while the table holds anything, gives a watcher to each request that has
waited that long. A quick request has left the table before a sweep finds it.

Under Circuit's HTTP protocol no watcher is needed: the request's HangUp
(circuit.gateway.hang_up) tells of the hang-up at once, so a watch only registers with it.

A hang-up marks the watch `gone`, and for a stream cancels the request's task
(circuit.gateway.door_flow records it): a stream's upstream stops generating when its
connection drops. A JSON request's upstream may not, and would bill the whole answer all the
same, so it runs to its end and is charged what it reports; its record says the client was
gone either way, and a retry's backoff (`pause`) ends at the hang-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from starlette.types import Receive

from circuit.gateway.hang_up import HangUp
from circuit.loop_sweep import LoopSweep, Sweeps

#: Seconds a request waits before it is watched (and between sweeps): a client gone is noticed
#: within twice this.
WATCH_AFTER = 0.25


class ClientWatch:
    """One request's watch: `start` once its body is in, `stop` once its answer is ready."""

    __slots__ = ("_receive", "_hang_up", "_task", "_at", "_sweep", "_watcher", "_cancel",
                 "_wake", "gone")

    def __init__(self, receive: Receive, hang_up: HangUp | None = None) -> None:
        self._receive = receive
        self._hang_up = hang_up
        self._task: asyncio.Task | None = None
        self._at = 0.0  # when the sweep is to give it a watcher
        self._sweep: LoopSweep | None = None
        self._watcher: asyncio.Task | None = None
        self._cancel = False
        self._wake: asyncio.Future | None = None  # a pause to end at the hang-up
        #: The client hung up while the request waited.
        self.gone = False

    def start(self, cancel: bool) -> None:
        """Watch from now on (nothing else may read `receive` until `stop`); `cancel`: cancel
        the request's task when the client hangs up."""
        if self._task is not None:
            return
        self._cancel = cancel
        self._task = asyncio.current_task()
        if self._hang_up is not None:
            self._hang_up.on(self._hung_up)
            return
        sweep = _SWEEPS.of(asyncio.get_running_loop())
        self._at = sweep.loop.time() + WATCH_AFTER
        self._sweep = sweep
        sweep.add(self)

    def stop(self) -> None:
        """Stop watching (the answer is about to go out, or the request is over)."""
        if self._task is None:
            return
        self._task = None
        if self._hang_up is not None:
            self._hang_up.off(self._hung_up)
            return
        sweep = self._sweep
        self._sweep = None
        sweep.discard(self)
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def _due(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._wait_for_hang_up())

    async def _wait_for_hang_up(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
        self._hung_up()

    async def pause(self, wait: Awaitable[None]) -> None:
        """Await `wait` (a retry's backoff), or stop at once when the client hangs up: the
        request's record and its grants are not held for a wait nobody awaits."""
        if self._task is None:  # not watching: nothing can cut it short
            await wait
            return
        if self.gone:
            if asyncio.iscoroutine(wait):
                wait.close()
            return
        self._wake = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(wait)
        try:
            await asyncio.wait((waiting, self._wake), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            self._wake.cancel()
            self._wake = None

    def _hung_up(self) -> None:
        task = self._task
        if task is not None:
            self.gone = True
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)
            if self._cancel:
                task.cancel()


#: The requests of each loop waiting unwatched.
_SWEEPS = Sweeps(WATCH_AFTER)
