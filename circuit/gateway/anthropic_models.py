"""GET /v1/models and GET /v1/models/{id} in Anthropic's shape, for a client that sends
`anthropic-version` (the Anthropic SDK's `models.list()` and `models.retrieve()`, Claude Code's
model picker): the models the gateway serves, its routes first, then what the default provider
lists."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from circuit.errors import CircuitError, NotFound
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


def anthropic_model_list(models: list[str]) -> dict[str, Any]:
    """One page holding every model: `{"data": [...], "has_more": false, first_id, last_id}`."""
    return {"data": [anthropic_model(m) for m in models], "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None}


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
        return json_response(anthropic_model_list(await served_models(gateway)))
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
