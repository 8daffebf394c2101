"""Errors to HTTP, in one place, and the JSON responses the gateway sends."""

from __future__ import annotations

import http
import logging
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from circuit.errors import (
    CircuitError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
)

log = logging.getLogger("circuit.gateway")


def json_response(content: object, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers,
                    media_type="application/json")


def error_response(error: CircuitError) -> Response:
    """The HTTP answer for a client-visible error: OpenAI's shape, its status, its headers."""
    return json_response(error.body(), error.status, error.headers)


def failure_response(exchange: Any, failure: Exception) -> Response:
    """The answer, and the record, of a door's request that ended in `failure`: a typed
    error in OpenAI's shape; a client that left mid-body (nothing to answer); or a bug, which
    the client sees as a 500 without its traceback. `exchange`: the request's Exchange."""
    if isinstance(failure, ClientDisconnect):
        exchange.client_left()
        return Response(status_code=499)
    if not isinstance(failure, CircuitError):
        log.error("request %s failed unexpectedly", exchange.record.request_id,
                  exc_info=failure)
        failure = CircuitError("The gateway failed unexpectedly; see its log.")
    exchange.refuse(failure)
    return error_response(failure)


def closing_error_bytes(error: CircuitError, request_id: str) -> bytes:
    """The same answer as raw HTTP/1.1 bytes ending the connection, for what the server's
    protocol refuses before any app sees a request (unreadable or oversized heads, timeouts,
    the connection limit)."""
    body = orjson.dumps(error.body())
    head = [f"HTTP/1.1 {error.status} {http.HTTPStatus(error.status).phrase}",
            "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", f"x-request-id: {request_id}",
            *(f"{k}: {v}" for k, v in error.headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def _circuit_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CircuitError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFound(f"Unknown path {request.url.path}"))
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(
            f"Method {request.method} is not allowed on {request.url.path}",
            headers={k.lower(): v for k, v in (exc.headers or {}).items()}))
    error = CircuitError(str(exc.detail), code="http_error")
    error.status = exc.status_code
    error.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error_response(error)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return error_response(InvalidRequest(f"{where or 'body'}: {first.get('msg', 'invalid')}"))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # A bug, not bad input: the client gets the shape and no traceback; the log gets the detail.
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(CircuitError("The gateway failed unexpectedly; see its log."))


EXCEPTION_HANDLERS = {
    CircuitError: _circuit_error,
    HTTPException: _http_error,
    RequestValidationError: _validation_error,
    Exception: _unexpected_error,
}
