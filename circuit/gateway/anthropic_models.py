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


async def anthropic_models(gateway: Gateway, request: Request,
                           model: str | None = None) -> Response:
    """The list, or the one `model` (an unknown one: Anthropic's 404, `not_found_error`);
    errors in Anthropic's shape."""
    try:
        authenticate(gateway.keys, request.headers)
        models = await served_models(gateway)
        if model is None:
            return json_response(anthropic_model_list(models))
        if model not in models:
            raise NotFound(f"model: {model}")
    except CircuitError as error:
        return error_response(error, MESSAGES)
    return json_response(anthropic_model(model))
