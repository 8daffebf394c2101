"""The OpenAI API beside chat completions, door by door: what each asks and how it is bound.

    door (recorded api)  endpoints                                   budget
    embeddings           POST /v1/embeddings                          input tokens; no output
    completions          POST /v1/completions (JSON and SSE)          prompt + prompts x n x
                                                                      best_of x max_tokens (16)
    chat_store           GET /v1/chat/completions, GET|POST|DELETE    nothing billed: no
                         …/{id}, GET …/{id}/messages                  reservation
    models               GET /v1/models/{id}                          nothing billed
    images, audio, …     images, audio, files, batches, fine_tuning,  not boundable: passed
    (the resource)       uploads, vector_stores, … (UNBOUNDED)        through only for keys
                                                                      without a daily limit
    moderations          POST /v1/moderations                         free at OpenAI: nothing

Embeddings and completions are routed by their model like chat (routes, fallback); the others
name no model and go to the OpenAI-compatible provider (`openai_target`). Query strings are
forwarded as sent.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from circuit.accounting.bound import RequestBound, completions_bound, embeddings_bound
from circuit.errors import EndpointNotBudgeted, InvalidRequest, NotFound
from circuit.gateway.auth import ClientKey
from circuit.gateway.chat_request import read_body
from circuit.gateway.openai_requests import (
    DoorRequest,
    parse_completions_request,
    parse_embeddings_request,
)
from circuit.gateway.passthrough import DoorPlan, Planner
from circuit.gateway.request_id import SCOPE_KEY
from circuit.gateway.routing import Target
from circuit.gateway.runtime import Gateway
from circuit.money import usd_text
from circuit.providers.openai_passthrough import CompletionsReader, EmbeddingsReader, FreeReader
from circuit.providers.openai_wire import wants_usage
from circuit.wire import Passthrough, Usage

#: OpenAI resources whose cost Circuit cannot bound before the call: billed per image, per
#: second of audio, per stored byte and day, per training token of a file it cannot read…
UNBOUNDED = ("images", "audio", "files", "batches", "fine_tuning", "uploads", "vector_stores",
             "assistants", "threads", "containers", "videos", "evals",
             "conversations", "realtime")
#: Client headers these endpoints need upstream: the body's type (multipart uploads) and
#: OpenAI's beta opt-ins (`OpenAI-Beta: assistants=v2`). The client's key never goes up.
_FORWARDED_HEADERS = ("content-type", "openai-beta")
#: Answers that are not JSON: audio, and the content of files.
_BINARY_SUFFIXES = ("/content", "/speech")
#: What a request that bills nothing is bound by (no tokens; the exchange adds its margin).
_NOTHING = RequestBound(text_tokens=0, max_output=0)


def openai_target(gateway: Gateway) -> Target:
    """The provider of the endpoints that name no model: the default provider when it speaks
    OpenAI's API, else the first provider that does. It bills nothing through these doors
    (`free`), so a budgeted key may read a stored completion or a model."""
    provider = _openai_provider(gateway)
    if provider is None:
        raise NotFound("No OpenAI-compatible provider is configured to serve this endpoint")
    return Target(provider, "", free=True)


def _openai_provider(gateway: Gateway):
    router = gateway.router
    return next((p for p in (router.default, *router.providers.values()) if p.wire == "chat"),
                None)


def has_openai_target(gateway: Gateway) -> bool:
    """Whether the endpoints that name no model have a provider (`openai_target`)."""
    return _openai_provider(gateway) is not None


def _routed(gateway: Gateway, model: str, door: str) -> list[Target]:
    """The model's targets that speak OpenAI's API (an Anthropic target has no `door`)."""
    targets = [t for t in gateway.router.targets(model) if t.provider.wire == "chat"]
    if not targets:
        raise InvalidRequest(f"Model {model!r} is routed only to providers that do not serve "
                             f"/v1/{door}; route it to an OpenAI-compatible provider",
                             code="model_not_supported")
    return targets


def _aimed(request: DoorRequest, target: Target, changes: dict[str, Any]) -> bytes:
    """The client's bytes, unless the target's model (or `changes`) must be written in."""
    if request.body.get("model") != target.model:
        changes = {**changes, "model": target.model}
    return orjson.dumps({**request.body, **changes}) if changes else request.raw


def _with_query(path: str, request: Request) -> str:
    query = request.url.query
    return f"{path}?{query}" if query else path


def _request_id(request: Request) -> str:
    return request.scope.get(SCOPE_KEY, "")


async def embeddings_plan(gateway: Gateway, request: Request, key: ClientKey) -> DoorPlan:
    """POST /v1/embeddings."""
    asked = parse_embeddings_request(await read_body(request, gateway.settings.max_body_bytes))
    bound = embeddings_bound(asked.body)
    path = _with_query("/embeddings", request)

    def passthrough(target: Target) -> Passthrough:
        return Passthrough(path, _aimed(asked, target, {}), False, _request_id(request))

    return DoorPlan(
        "embeddings", "embeddings", asked.model, _routed(gateway, asked.model, "embeddings"),
        bound, passthrough, EmbeddingsReader(), body=asked.body,
        # An answer without usage is charged its bound: never less than it can have cost.
        unreported=lambda target: Usage(input_tokens=bound.input_tokens(target.model),
                                        source="local"))


async def completions_plan(gateway: Gateway, request: Request, key: ClientKey) -> DoorPlan:
    """POST /v1/completions (legacy), JSON or stream; a stream asks for usage, and hides the
    usage chunk from a client that did not ask for it, as the chat door does."""
    asked = parse_completions_request(await read_body(request, gateway.settings.max_body_bytes))
    changes: dict[str, Any] = {}
    forward_usage = wants_usage(asked.body)
    if asked.stream and not forward_usage:
        options = asked.body.get("stream_options") or {}
        changes["stream_options"] = {**options, "include_usage": True}
    path = _with_query("/completions", request)

    def passthrough(target: Target) -> Passthrough:
        return Passthrough(path, _aimed(asked, target, changes), asked.stream,
                           _request_id(request))

    prompt = asked.body["prompt"]
    prompts = [prompt] if isinstance(prompt, str) else prompt
    return DoorPlan(
        "completions", "completions", asked.model,
        _routed(gateway, asked.model, "completions"), completions_bound(asked.body),
        passthrough, CompletionsReader(forward_usage), stream=asked.stream, body=asked.body,
        messages=[{"role": "user", "content": p} for p in prompts if isinstance(p, str)])


def forwarded(api: str) -> Planner:
    """The planner of an endpoint that bills nothing and names no model (stored chat
    completions, a model's description): the request as sent (its path under /v1, its
    query, method and body), to the OpenAI provider."""

    async def plan(gateway: Gateway, request: Request, key: ClientKey) -> DoorPlan:
        target = openai_target(gateway)
        path = _with_query(_upstream_path(request), request)
        body = await read_body(request, gateway.settings.max_body_bytes)
        headers = _client_headers(request)

        def passthrough(_: Target) -> Passthrough:
            return Passthrough(path, body, False, _request_id(request), headers,
                               request.method)

        return DoorPlan(api, api, None, [target], _NOTHING, passthrough, FreeReader())

    return plan


async def unbounded_plan(gateway: Gateway, request: Request, key: ClientKey) -> DoorPlan:
    """An endpoint whose cost Circuit cannot bound: refused for a key with a daily limit
    (no reservation could keep it), passed through as it is for a key without one."""
    limit = gateway.daily_limit_micros(key)
    resource = request.path_params["resource"]
    if limit is not None:
        raise not_budgeted(resource, limit)
    plan = await forwarded(resource)(gateway, request, key)
    if request.url.path.endswith(_BINARY_SUFFIXES):
        plan.media_type = "application/octet-stream"
    return plan


def _upstream_path(request: Request) -> str:
    """The path under /v1 as the client sent it (still percent-encoded: a model id may hold
    an encoded slash); never one that climbs out of the provider's base URL."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").partition("?")[0].removeprefix("/v1")
    if any(part in (".", "..") for part in path.split("/")):
        raise InvalidRequest("A path with '.' or '..' segments is not forwarded",
                             code="invalid_path")
    return path


#: Why a budgeted key is refused an unboundable endpoint (README quotes it).
_NOT_BUDGETED = ("/v1/{resource} is billed in ways Circuit cannot bound before the call (per "
                 "image, second of audio, stored byte, training token…), so a key with a daily "
                 "limit ({limit}) may not use it. Use a key without a daily limit (`circuit keys "
                 "add NAME --daily-limit unlimited`).")


def not_budgeted(resource: str, limit_micros: int) -> EndpointNotBudgeted:
    return EndpointNotBudgeted(_NOT_BUDGETED.format(resource=resource,
                                                    limit=usd_text(limit_micros)))


def _client_headers(request: Request) -> dict[str, str]:
    return {name: value for name in _FORWARDED_HEADERS
            if (value := request.headers.get(name)) is not None}
