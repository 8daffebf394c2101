"""x-request-id: honour a well-formed incoming one, else make one; put it on every response."""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SCOPE_KEY = "circuit.request_id"
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> str:
    """A fresh id: `req_` and 24 hex characters."""
    return "req_" + os.urandom(12).hex()


class RequestIdMiddleware:
    """Pure ASGI (no per-request objects beyond the id), so every response carries the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _WELL_FORMED.fullmatch(value):
                    request_id = value.decode("ascii")
                break
        request_id = request_id or new_request_id()
        scope[SCOPE_KEY] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
