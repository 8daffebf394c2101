"""x-request-id: honour a well-formed incoming one, else make one; put it on every response."""

from __future__ import annotations

import itertools
import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SCOPE_KEY = "circuit.request_id"
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
# A random per-process prefix and a counter: unique across processes and restarts, and far
# cheaper per request than asking the kernel for fresh randomness.
_PREFIX = "req_" + os.urandom(6).hex()
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A fresh id: `req_`, 12 random hex characters for this process, 10 of counter."""
    return f"{_PREFIX}{next(_COUNTER):010x}"


def assign_request_id(scope: Scope) -> bytes:
    """Put the request's id in the scope (the client's, if well-formed) and return it; one
    already there (the protocol answered the request itself) is kept."""
    assigned = scope.get(SCOPE_KEY)
    if assigned is not None:
        return assigned.encode("ascii")
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _WELL_FORMED.fullmatch(value):
                scope[SCOPE_KEY] = value.decode("ascii")
                return value
            break
    request_id = new_request_id()
    scope[SCOPE_KEY] = request_id
    return request_id.encode("ascii")


def send_with_request_id(send: Send, request_id: bytes) -> Send:
    """`send`, adding the x-request-id header to the response's start."""
    header = (b"x-request-id", request_id)

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return sender


class RequestIdMiddleware:
    """Pure ASGI, so every response — errors and unknown paths too — carries the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send_with_request_id(send, assign_request_id(scope)))
