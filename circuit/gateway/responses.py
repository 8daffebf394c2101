"""Errors to HTTP, in one place, and the JSON responses the gateway sends.

Each door's error shape and status are declared in circuit.gateway.doors; `error_response`
answers with the one of the door asked (OpenAI's, the default, for every non-proxy route).
What the router answers itself (unknown paths, methods, unreadable bodies, bugs) is in
Anthropic's shape for an Anthropic client (`doors.anthropic_client`), OpenAI's otherwise."""

from __future__ import annotations

import http
import logging

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from circuit.errors import (
    CircuitError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
)
from circuit.gateway.doors import CHAT, MESSAGES, Door, anthropic_client

log = logging.getLogger("circuit.gateway")


class UpstreamAnswer(Response):
    """A 200 answer of the upstream's body as it came, `x-circuit-provider` naming who served
    it. Its headers are written raw at once: starlette's `Response` makes them in three passes
    over a dict, on every request."""

    def __init__(self, body: bytes, provider: str, media_type: str = "application/json") -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        if media_type.startswith("text/") and "charset=" not in media_type:
            media_type += "; charset=utf-8"  # as starlette would
        self.raw_headers = [(b"x-circuit-provider", provider.encode("latin-1")),
                            (b"content-length", str(len(body)).encode("latin-1")),
                            (b"content-type", media_type.encode("latin-1"))]


def json_response(content: object, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers,
                    media_type="application/json")


def error_response(error: CircuitError, door: Door = CHAT) -> Response:
    """The HTTP answer for a client-visible error: the door's shape and status (OpenAI's by
    default), the error's headers (Retry-After …)."""
    return json_response(door.error_body(error), door.error_status(error), error.headers)


def closing_error_bytes(error: CircuitError, request_id: str, door: Door = CHAT) -> bytes:
    """The same answer as raw HTTP/1.1 bytes ending the connection, in `door`'s shape, for
    what the server's protocol refuses before any app sees a request (unreadable or oversized
    heads, timeouts, the connection limit)."""
    body = orjson.dumps(door.error_body(error))
    status = door.error_status(error)
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
            "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", f"x-request-id: {request_id}",
            *(f"{k}: {v}" for k, v in error.headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _routed_error(request: Request, error: CircuitError) -> Response:
    """An error the router answers: in the shape of the client's door."""
    door = MESSAGES if anthropic_client(request.url.path, request.headers) else CHAT
    return error_response(error, door)


async def _circuit_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CircuitError)
    return _routed_error(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _routed_error(request, NotFound(f"Unknown path {request.url.path}"))
    if exc.status_code == 405:
        return _routed_error(request, MethodNotAllowed(
            f"Method {request.method} is not allowed on {request.url.path}",
            headers={k.lower(): v for k, v in (exc.headers or {}).items()}))
    error = CircuitError(str(exc.detail), code="http_error")
    error.status = exc.status_code
    error.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return _routed_error(request, error)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return _routed_error(request, InvalidRequest(
        f"{where or 'body'}: {first.get('msg', 'invalid')}"))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # A bug, not bad input: the client gets the shape and no traceback; the log gets the detail.
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _routed_error(request, CircuitError("The gateway failed unexpectedly; see its log."))


EXCEPTION_HANDLERS = {
    CircuitError: _circuit_error,
    HTTPException: _http_error,
    RequestValidationError: _validation_error,
    Exception: _unexpected_error,
}
