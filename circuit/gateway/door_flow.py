"""DoorFlow: what every door's endpoint does around its own steps, written once.

A door (chat, messages, …) subclasses it, names its `door` (circuit.gateway.doors) and writes
`serve(request, exchange)`: auth, body, admit, dispatch, answer. Around it: the exchange that
owns the request and its one record, the request id in the logs, and every error answered in
the door's own shape — a typed CircuitError as it is, a client gone before its body was whole
(or, watched, while the answer was awaited) as a 499, and a bug as a 500 without its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from circuit.errors import AuthenticationFailed, CircuitError, GatewayStopping
from circuit.gateway.auth import ClientKey
from circuit.gateway.client_watch import ClientWatch
from circuit.gateway.doors import Door, worded
from circuit.gateway.exchange import Exchange
from circuit.gateway.hang_up import hang_up_of
from circuit.gateway.messages_request import authenticate as anthropic_key
from circuit.gateway.request_id import SCOPE_KEY, new_request_id
from circuit.gateway.responses import error_response
from circuit.gateway.runtime import Gateway
from circuit.logs import current_request_id

log = logging.getLogger("circuit.gateway")


def identify(exchange: Exchange, authenticate: Callable[[], ClientKey]) -> ClientKey:
    """The caller `authenticate()` finds, named in the record (a revoked key's name too; None
    if unknown), or AuthenticationFailed."""
    try:
        key = authenticate()
    except AuthenticationFailed as refused:
        exchange.caller(None, refused.key_name)
        raise
    exchange.caller(key)
    return key


class DoorFlow:
    """An endpoint of one door; subclasses write `serve`."""

    door: Door
    #: The name the endpoint is recorded under (`api`): its door's, unless it says otherwise.
    api: str | None = None

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def serve(self, request: Request, exchange: Exchange) -> Response:
        raise NotImplementedError

    def authenticate(self, request: Request, exchange: Exchange) -> ClientKey:
        """The caller of a door that takes `Authorization: Bearer`, named in the record (a
        revoked key's name too; None if unknown), or AuthenticationFailed."""
        return identify(exchange, lambda: self.gateway.keys.authenticate(
            request.headers.get("authorization")))

    def authenticate_anthropic(self, request: Request, exchange: Exchange) -> ClientKey:
        """The same for an Anthropic client: `x-api-key` or `Authorization: Bearer`."""
        return identify(exchange, lambda: anthropic_key(self.gateway.keys, request.headers))

    async def __call__(self, request: Request) -> Response:
        hang_up = hang_up_of(request.scope)
        watch = ClientWatch(request.receive, hang_up)
        exchange = Exchange(self.gateway, request.scope.get(SCOPE_KEY) or new_request_id(),
                            watch)
        # The door is known before anything can fail: a request refused at auth or at its
        # body is recorded under the door it came in by (`asks` may name it more closely).
        exchange.record.api = self.api or self.door.name
        current_request_id.set(exchange.record.request_id)
        try:
            if hang_up is not None and hang_up.answered is not None:
                # Answered by the protocol while it waited behind pipelined requests: recorded
                # as that answer, whatever serving it would have found.
                raise ClientDisconnect
            return await self.serve(request, exchange)
        except CircuitError as error:
            error = worded(error, self.door)
            exchange.refuse(error, self.door.error_status(error))
            return error_response(error, self.door)
        except ClientDisconnect:
            hang_up = hang_up_of(request.scope)
            if hang_up is not None and hang_up.answered is not None:
                # The protocol ended the request itself (its body was too slow) and answered.
                error = hang_up.answered
                exchange.refuse(error, self.door.error_status(error))
                return Response(status_code=error.status)
            # The client left before its request was whole: nothing to answer, nothing failed.
            exchange.client_left()
            return Response(status_code=499)
        except asyncio.CancelledError:
            # The watch cancelled it (a stream's client hung up while it waited), or the server is
            # stopping past its grace period: recorded either way, and answered in the door's
            # shape if anyone still reads (not uvicorn's plain-text 500 and a traceback).
            asyncio.current_task().uncancel()
            if watch.gone:
                exchange.cut_off()
                return Response(status_code=499)
            error = GatewayStopping()
            exchange.cut_off(error, self.door.error_status(error))
            return error_response(error, self.door)
        except Exception as exc:
            log.error("request %s failed unexpectedly", exchange.record.request_id, exc_info=exc)
            error = CircuitError("The gateway failed unexpectedly; see its log.")
            exchange.refuse(error, self.door.error_status(error))
            return error_response(error, self.door)
        finally:
            watch.stop()
