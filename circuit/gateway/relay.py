"""StreamRelay: passes an upstream stream to the client as it arrives, and settles it at the end.

Each network read from upstream becomes one write to the client; accounting only looks at the
events on their way through. The door (circuit.gateway.doors) says how an event is framed, what
ends a stream and what error event ends a broken one. A client that leaves, even while the
upstream is silent, cancels the relay, so the upstream call is dropped at once: the request's
HangUp tells of it (circuit.gateway.hang_up), or, where the server gives none, a task awaiting
`receive`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from circuit.accounting.stream_tally import StreamTally
from circuit.errors import CircuitError, StreamBroken, UpstreamError, UpstreamOverrun
from circuit.gateway.doors import CHAT, Door
from circuit.gateway.hang_up import hang_up_of
from circuit.providers.upstream_errors import upstream_error_fields
from circuit.wire import EventStream


@dataclass(slots=True)
class StreamOutcome:
    """How a relayed stream ended, for settlement."""

    status: str = "ok"  # ok | failed | client_disconnected
    error: CircuitError | None = None
    first_byte_at: float | None = None


class StreamRelay(Response):
    """An ASGI response relaying `stream` in `door`'s framing; calls `settle(tally, outcome)`
    exactly once."""

    def __init__(self, stream: EventStream, tally: StreamTally,
                 settle: Callable[[StreamTally, StreamOutcome], None],
                 headers: dict[str, str], door: Door = CHAT) -> None:
        self._stream = stream
        self._door = door
        self._tally = tally
        self._relayed = 0  # events sent to the client (a Responses error event is numbered so)
        self._settle = settle
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                         (b"cache-control", b"no-cache"),
                         (b"x-accel-buffering", b"no"),
                         *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = StreamOutcome()
        relay = asyncio.current_task()
        gone = False  # the client hung up (and the relay was cancelled for it)
        hang_up = hang_up_of(scope)
        watcher = None

        def hung_up() -> None:
            nonlocal gone
            gone = True
            relay.cancel()

        if hang_up is not None:
            hang_up.on(hung_up)
        else:
            watcher = asyncio.create_task(_watch_disconnect(receive, hung_up))
        started = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            started = True
            await self._pump(send, outcome)
        except asyncio.CancelledError:
            relay.uncancel()
            if gone:
                outcome.status = "client_disconnected"
            else:
                # The server is stopping past its grace period: end the stream as any other
                # failure after the first byte ends, with an error event and a clean end.
                error = StreamBroken("The gateway stopped mid-stream", code="gateway_shutdown")
                if started:
                    with contextlib.suppress(Exception):
                        await self._fail(send, outcome, error)
                outcome.status, outcome.error = "failed", error
        except OSError:
            outcome.status = "client_disconnected"
        finally:
            if watcher is not None:
                watcher.cancel()
            else:
                hang_up.off(hung_up)
            # Settle before awaiting anything: a late cancellation must not skip the record.
            self._settle(self._tally, outcome)
            # The connection is being dropped either way.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._stream.aclose()

    async def _pump(self, send: Send, outcome: StreamOutcome) -> None:
        tally = self._tally
        guard = tally.guard
        frames = self._door.frames
        try:
            async for events in self._stream:
                out = tally.observe(events)
                # Checked before relaying: a read that passes the reservation is not sent.
                if guard is not None and guard.due() and await guard.exceeded(tally.pieces):
                    await self._fail(send, outcome, UpstreamOverrun(
                        f"The upstream streamed more than the {guard.limit} output tokens "
                        "this request reserved; the gateway cut the stream there"))
                    return
                if out:
                    await send({"type": "http.response.body", "body": frames(out),
                                "more_body": True})
                    self._relayed += len(out)
                    if outcome.first_byte_at is None:
                        outcome.first_byte_at = perf_counter()
                if tally.error is not None:
                    # Already redacted by the provider; made fit for a record and a label.
                    error = upstream_error_fields(tally.error, None)
                    outcome.status = "failed"
                    outcome.error = StreamBroken(error["message"] or "upstream error",
                                                 code=error["code"] or "upstream_stream_error")
                    break
        except UpstreamError as error:
            await self._fail(send, outcome, error)
            return
        await send({"type": "http.response.body", "body": self._door.end, "more_body": False})

    async def _fail(self, send: Send, outcome: StreamOutcome, error: CircuitError) -> None:
        # The client gets the error as the door's error event, then a clean end.
        outcome.status = "failed"
        outcome.error = error
        await send({"type": "http.response.body",
                    "body": self._door.stream_error(error, self._relayed),
                    "more_body": False})
        if outcome.first_byte_at is None:
            outcome.first_byte_at = perf_counter()


async def _watch_disconnect(receive: Receive, hung_up: Callable[[], None]) -> None:
    """Where the server gives no HangUp: await `receive` until the client hangs up."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            hung_up()
            return
