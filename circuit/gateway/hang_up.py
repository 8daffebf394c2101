"""HangUp: a request's connection telling the gateway that its client hung up.

ASGI says so only through `receive`, which the gateway must then await in a task of its own
for as long as it wants to know (~27,000 instructions a task, a streamed answer's most costly
single part after its events). Circuit's HTTP protocol (circuit.gateway.http_protocol) knows it
without a task: it puts one HangUp in each request's scope and fires it when the connection is
lost before the answer is complete. The relay and the client watch use it where it is there,
and await `receive` where it is not (the app under plain `uvicorn circuit.main:app`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from circuit.errors import CircuitError

#: The scope key of a request's HangUp.
SCOPE_KEY = "circuit.hang_up"


class HangUp:
    """Calls each callback given to `on` once, when the client hangs up (at once, if it has)."""

    __slots__ = ("_callbacks", "happened", "answered")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], Any]] = []
        self.happened = False
        #: What the protocol answered itself before ending the request (a body that did not
        #: arrive in time): the request is recorded as that, not as a client that left.
        self.answered: CircuitError | None = None

    def on(self, callback: Callable[[], Any]) -> None:
        if self.happened:
            callback()
        else:
            self._callbacks.append(callback)

    def off(self, callback: Callable[[], Any]) -> None:
        """`callback` is not to be called any more (a no-op if it was not given)."""
        callbacks = self._callbacks
        if callback in callbacks:
            callbacks.remove(callback)

    def fire(self) -> None:
        """The connection is lost (the protocol calls this once)."""
        if self.happened:
            return
        self.happened = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def hang_up_of(scope: dict[str, Any]) -> HangUp | None:
    """The request's HangUp, or None when its server does not give one."""
    return scope.get(SCOPE_KEY)
