"""GET /v1/models and GET /v1/models/{id} in Anthropic's shape, for a client that sends
`anthropic-version` (the Anthropic SDK's `models.list()` and `models.retrieve()`, Claude Code's
model picker): the models the gateway serves, its routes first, then what the default provider
lists."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from circuit.errors import CircuitError, InvalidRequest, NotFound
from circuit.gateway.doors import MESSAGES
from circuit.gateway.messages_request import authenticate
from circuit.gateway.openai_surface import has_openai_target
from circuit.gateway.passthrough import PassthroughDoor
from circuit.gateway.responses import error_response, json_response
from circuit.gateway.runtime import Gateway

#: Anthropic's models carry a creation time; the gateway's routes have none.
_EPOCH = "1970-01-01T00:00:00Z"


def anthropic_model(model: str) -> dict[str, Any]:
    """One model as Anthropic describes it (`display_name` is the id: routes have no other)."""
    return {"type": "model", "id": model, "display_name": model, "created_at": _EPOCH}


#: Anthropic's page size when `limit` is not sent, and the most it allows.
DEFAULT_PAGE, MAX_PAGE = 20, 1000


def anthropic_model_list(models: list[str], query: Mapping[str, str] | None = None
                         ) -> dict[str, Any]:
    """One page of `models` as Anthropic pages them: `limit` (1–1000, default 20), after
    `after_id` or before `before_id`; `has_more` when more lie that way (the SDK's iterator
    follows `last_id`). An id not among them gives an empty page."""
    query = query or {}
    raw = query.get("limit")
    if raw is None:
        limit = DEFAULT_PAGE
    elif raw.isdigit() and 1 <= int(raw) <= MAX_PAGE:
        limit = int(raw)
    else:
        raise InvalidRequest(f"limit: Input should be an integer from 1 to {MAX_PAGE}")
    start, end = 0, len(models)
    if (after := query.get("after_id")) is not None:
        start = models.index(after) + 1 if after in models else end
    if (before := query.get("before_id")) is not None:
        end = models.index(before) if before in models else 0
        start = max(start, end - limit)
    page = models[start:end][:limit]
    more = start > 0 if before is not None else start + len(page) < end
    return {"data": [anthropic_model(m) for m in page], "has_more": more,
            "first_id": page[0] if page else None, "last_id": page[-1] if page else None}


async def served_models(gateway: Gateway) -> list[str]:
    """The routed models, then the others the default provider lists (UpstreamError if it
    cannot list them)."""
    routed = gateway.router.routed_models
    served = await gateway.router.default.list_models()
    return [*routed, *(m for m in served if m not in routed)]


async def anthropic_models(gateway: Gateway, request: Request) -> Response:
    """The list, errors in Anthropic's shape."""
    try:
        authenticate(gateway.keys, request.headers)
        return json_response(anthropic_model_list(await served_models(gateway),
                                                  request.query_params))
    except CircuitError as error:
        return error_response(error, MESSAGES)


def anthropic_model_describer(gateway: Gateway, door: PassthroughDoor):
    """GET /v1/models/{id} for an Anthropic client: the ids the OpenAI-shaped call answers
    for, resolved the same way — a routed model here, without an upstream call; any other
    by `door` (the OpenAI-compatible provider describes it, as for an OpenAI client), or, with
    no such provider, by the default provider's list. Anthropic's shape, errors too (an
    unknown id: 404 `not_found_error`)."""

    async def describe(request: Request, model: str) -> Response:
        try:
            if model in gateway.router.routed_models:
                authenticate(gateway.keys, request.headers)
                return json_response(anthropic_model(model))
            if not has_openai_target(gateway):
                authenticate(gateway.keys, request.headers)
                if model not in await served_models(gateway):
                    raise NotFound(f"model: {model}")
                return json_response(anthropic_model(model))
        except CircuitError as error:
            return error_response(error, MESSAGES)
        described = await door(request)
        if described.status_code != 200:
            return described
        return json_response(anthropic_model(model), headers={
            k: v for k, v in described.headers.items() if k.startswith("x-circuit-")})

    return describe
