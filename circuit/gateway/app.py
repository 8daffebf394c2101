"""create_app: the FastAPI application around one Gateway."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from circuit import __version__
from circuit.config import Settings, load_settings
from circuit.errors import AuthenticationFailed, CircuitError
from circuit.gateway.anthropic_models import anthropic_models
from circuit.gateway.connections import lifespan_state
from circuit.gateway.flow import ChatFlow
from circuit.gateway.heap import settle_heap
from circuit.gateway.messages_count import CountTokensFlow
from circuit.gateway.messages_flow import MessagesFlow
from circuit.gateway.openai_routes import add_openai_routes
from circuit.gateway.openai_surface import completions_plan, embeddings_plan
from circuit.gateway.passthrough import PassthroughDoor
from circuit.gateway.readiness import readiness
from circuit.gateway.request_id import RequestIdMiddleware, assign_request_id
from circuit.gateway.responses import EXCEPTION_HANDLERS, error_response, json_response
from circuit.gateway.responses_flow import ResponsesFlow
from circuit.gateway.runtime import Gateway
from circuit.logs import configure_logging
from circuit.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

#: Documents the endpoint for OpenAPI clients; the body itself is read raw (see chat_request).
_CHAT_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": {
                "model": {"type": "string", "minLength": 1},
                "messages": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["role"],
                    "properties": {"role": {"type": "string"}}}},
                "stream": {"type": "boolean"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "max_completion_tokens": {"type": "integer", "minimum": 1},
                "stream_options": {"type": "object"},
            },
        }}},
    }
}

#: The Responses door's body, as far as the gateway reads it (responses_request.py).
_RESPONSES_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["model"],
            "properties": {
                "model": {"type": "string", "minLength": 1},
                "input": {"oneOf": [{"type": "string"},
                                    {"type": "array", "items": {"type": "object"}}]},
                "instructions": {"type": "string"},
                "stream": {"type": "boolean"},
                "max_output_tokens": {"type": "integer", "minimum": 1},
                "tools": {"type": "array", "items": {"type": "object"}},
                "previous_response_id": {"type": "string"},
            },
        }}},
    }
}


#: OpenAI's error shape (the 503 of an open breaker has no `type`: its body is fixed).
_ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"}}}},
}
#: The errors the chat route answers with, for the OpenAPI description.
_CHAT_ERRORS = {status: {"description": description,
                         "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
                for status, description in {
    400: "Invalid request: malformed JSON, a missing or ill-typed field, unreadable HTTP",
    401: "Missing, unknown or revoked API key",
    404: "The upstream does not know the model",
    413: "Request body over CIRCUIT_MAX_BODY_BYTES",
    429: "Rate limit (requests or tokens per minute) or daily budget reached; see Retry-After",
    502: "The upstream failed, or its answer was over its size bound",
    503: "No upstream can serve (circuit breaker open), or every connection is busy; "
         "see Retry-After",
    504: "The upstream did not answer, or went silent, within its timeout",
}.items()}


#: The Messages door's body, for OpenAPI clients (read raw, as the chat body is).
MESSAGES_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["model", "messages", "max_tokens"],
            "properties": {
                "model": {"type": "string", "minLength": 1},
                "messages": {"type": "array", "minItems": 1},
                "max_tokens": {"type": "integer", "minimum": 1},
                "system": {},
                "stream": {"type": "boolean"},
            },
        }}},
    }
}


#: count_tokens takes the same body, without `max_tokens`.
COUNT_TOKENS_BODY_SCHEMA = {"requestBody": {**MESSAGES_BODY_SCHEMA["requestBody"], "content": {
    "application/json": {"schema": {
        **MESSAGES_BODY_SCHEMA["requestBody"]["content"]["application/json"]["schema"],
        "required": ["model", "messages"]}}}}}


class CircuitApp(FastAPI):
    """FastAPI, with the proxy route served on a fast path in front of its middleware stack.

    Every request through FastAPI's stack pays for its routing, dependency solving, exception
    and telemetry middleware (tens of microseconds); the proxy route needs none of it: its
    handler maps its own errors to responses. Everything else goes through FastAPI as usual,
    and the route stays declared there for the OpenAPI description.
    """

    fast_routes: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.fast_routes.get((scope["method"], scope["path"]))
            if handler is not None:
                request_id = assign_request_id(scope)
                response = await handler(Request(scope, receive))
                # Every fast-route answer is a starlette Response: the id joins its headers
                # here, rather than through a wrapper around each of its sends.
                response.raw_headers.append((b"x-request-id", request_id))
                try:  # noqa: SIM105 - contextlib.suppress is three calls more a request
                    await response(scope, receive, send)
                except (OSError, ClientDisconnect):
                    pass
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway app; settings are loaded from every source when not given."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
        await gateway.start()
        settle_heap()
        try:
            # The HTTP protocol (circuit.gateway.http_protocol) reads its limits from here.
            yield lifespan_state(settings)
        finally:
            await gateway.stop()

    app = CircuitApp(title="Circuit", version=__version__, lifespan=lifespan,
                     exception_handlers=EXCEPTION_HANDLERS, docs_url=None, redoc_url=None)
    # A redirect for a trailing slash would be built from the Host header and bypass the
    # record; an unknown path is a 404 in OpenAI's shape instead.
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    chat = ChatFlow(gateway)
    messages = MessagesFlow(gateway)
    count_tokens = CountTokensFlow(gateway)
    responses = ResponsesFlow(gateway)
    embeddings = PassthroughDoor(gateway, "embeddings", embeddings_plan)
    completions = PassthroughDoor(gateway, "completions", completions_plan)
    app.fast_routes = {("POST", "/v1/chat/completions"): chat,
                       ("POST", "/v1/messages"): messages,
                       ("POST", "/v1/messages/count_tokens"): count_tokens,
                       ("POST", "/v1/responses"): responses,
                       ("POST", "/v1/embeddings"): embeddings,
                       ("POST", "/v1/completions"): completions}

    @app.post("/v1/chat/completions", openapi_extra=_CHAT_BODY_SCHEMA, responses=_CHAT_ERRORS,
              summary="Create a chat completion (OpenAI-compatible, JSON or SSE)")
    async def chat_completions(request: Request) -> Response:
        return await chat(request)

    @app.post("/v1/embeddings", responses=_CHAT_ERRORS,
              summary="Create embeddings (OpenAI-compatible passthrough)")
    async def create_embeddings(request: Request) -> Response:
        return await embeddings(request)

    @app.post("/v1/completions", responses=_CHAT_ERRORS,
              summary="Create a legacy completion (OpenAI-compatible passthrough, JSON or SSE)")
    async def create_completion(request: Request) -> Response:
        return await completions(request)

    @app.post("/v1/responses", openapi_extra=_RESPONSES_BODY_SCHEMA, responses=_CHAT_ERRORS,
              summary="Create a model response (OpenAI Responses API, JSON or SSE)")
    async def create_response(request: Request) -> Response:
        return await responses(request)

    @app.post("/v1/messages", openapi_extra=MESSAGES_BODY_SCHEMA,
              summary="Create a message (Anthropic Messages API, JSON or SSE)")
    async def create_message(request: Request) -> Response:
        return await messages(request)

    @app.post("/v1/messages/count_tokens", openapi_extra=COUNT_TOKENS_BODY_SCHEMA,
              summary="Count a Messages request's input tokens (Anthropic; local elsewhere)")
    async def count_message_tokens(request: Request) -> Response:
        return await count_tokens(request)

    @app.get("/v1/models", summary="List the models the gateway serves")
    async def list_models(request: Request) -> Response:
        # A client that sends anthropic-version is answered as Anthropic would answer it.
        if "anthropic-version" in request.headers:
            return await anthropic_models(gateway, request)
        try:
            gateway.keys.authenticate(request.headers.get("authorization"))
            routed = gateway.router.routed_models
            served = await gateway.router.default.list_models()
        except CircuitError as error:
            return error_response(error)
        owner = gateway.router.default.name
        return json_response({"object": "list", "data": [
            *({"id": m, "object": "model", "created": 0, "owned_by": "circuit"} for m in routed),
            *({"id": m, "object": "model", "created": 0, "owned_by": owner}
              for m in served if m not in routed)]})

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> Response:
        return json_response({"status": "ok", "version": __version__})

    @app.get("/readyz", summary="Ready to serve: database reachable, writer healthy, providers")
    async def readyz() -> Response:
        checks = await readiness(gateway)
        ready = all(check["ok"] for check in checks.values())
        return json_response({"status": "ready" if ready else "not_ready", "checks": checks},
                             200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        token = settings.metrics_token
        if token is not None:
            scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                     token.encode()):
                return error_response(AuthenticationFailed(
                    "GET /metrics needs 'Authorization: Bearer <CIRCUIT_METRICS_TOKEN>'"))
        return Response(gateway.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    add_openai_routes(app, gateway)
    app.add_middleware(RequestIdMiddleware)
    return app
