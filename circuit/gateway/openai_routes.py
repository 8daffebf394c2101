"""The routes of the OpenAI surface that name a resource in their path (stored chat
completions, a model, the endpoints Circuit cannot bound), declared on the FastAPI app.

Unlike the hot doors (chat, embeddings, completions: fast routes, see app.py) these go through
FastAPI's routing for their path parameters; each is a PassthroughDoor (passthrough.py) with
the plan openai_surface.py gives it.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from circuit.errors import CircuitError
from circuit.gateway.anthropic_models import anthropic_models
from circuit.gateway.openai_surface import UNBOUNDED, forwarded, unbounded_plan
from circuit.gateway.passthrough import PassthroughDoor, Planner
from circuit.gateway.responses import error_response, json_response
from circuit.gateway.responses_store import stored_responses
from circuit.gateway.runtime import Gateway

#: Stored chat completions (`store: true`): (methods, path, what the route does).
_CHAT_STORE = (
    (["GET"], "/chat/completions", "List stored chat completions"),
    (["GET", "POST", "DELETE"], "/chat/completions/{completion_id}",
     "Get, update (metadata) or delete a stored chat completion"),
    (["GET"], "/chat/completions/{completion_id}/messages",
     "List the messages of a stored chat completion"),
)
#: Stored responses (OpenAI keeps them: `store`, `background`): passed through to a provider
#: that speaks Responses (responses_store.py).
_RESPONSES_STORE = (
    (["GET", "DELETE"], "/responses/{response_id}", "Get or delete a stored response"),
    (["POST"], "/responses/{response_id}/cancel", "Cancel a background response"),
    (["GET"], "/responses/{response_id}/input_items", "List a stored response's input items"),
    (["POST"], "/responses/input_tokens", "Count a Responses request's input tokens"),
)
_ALL_METHODS = ["GET", "POST", "DELETE"]


def add_openai_routes(app: FastAPI, gateway: Gateway) -> None:
    """Declare the routes; each one's door is built once, here."""
    for methods, path, summary in _CHAT_STORE:
        _route(app, gateway, "/v1" + path, methods, summary + " (passed through)",
               "chat_store", forwarded("chat_store"))
    for methods, path, summary in _RESPONSES_STORE:
        _route(app, gateway, "/v1" + path, methods, summary + " (passed through to OpenAI)",
               "responses", stored_responses)
    # Free at OpenAI: passed through for every key.
    _route(app, gateway, "/v1/moderations", ["POST"], "Classify text or images (passed "
           "through; billed nothing)", "moderations", forwarded("moderations"))
    _describe_models(app, gateway)
    for resource in UNBOUNDED:
        summary = (f"/v1/{resource}: passed through for keys without a daily limit, refused "
                   "(403 endpoint_not_budgeted) for keys with one")
        for path in (f"/v1/{resource}", f"/v1/{resource}/{{rest:path}}"):
            # Left out of the OpenAPI description: a passthrough policy, not Circuit's API
            # (the README's "Embeddings and the rest of the OpenAI API" describes it).
            _route(app, gateway, path, _ALL_METHODS, summary, resource,
                   _resource(resource, unbounded_plan), documented=False)


def _describe_models(app: FastAPI, gateway: Gateway) -> None:
    """GET /v1/models/{id}: a routed model is the gateway's own, described as GET /v1/models
    lists it; any other is the provider's to describe. A client that sends
    `anthropic-version` is answered in Anthropic's shape, as GET /v1/models answers it."""
    door = PassthroughDoor(gateway, "models", forwarded("models"))

    async def describe(request: Request) -> Response:
        model = request.path_params["model_id"]
        if "anthropic-version" in request.headers:
            return await anthropic_models(gateway, request, model)
        if model not in gateway.router.routed_models:
            return await door(request)
        try:
            gateway.keys.authenticate(request.headers.get("authorization"))
        except CircuitError as error:
            return error_response(error)
        return json_response({"id": model, "object": "model", "created": 0,
                              "owned_by": "circuit"})

    app.add_api_route("/v1/models/{model_id:path}", describe, methods=["GET"],
                      summary="Describe a model (a routed one here, any other upstream)")


def _resource(resource: str, planner: Planner) -> Planner:
    async def plan(gateway: Gateway, request: Request, key):
        request.path_params["resource"] = resource
        return await planner(gateway, request, key)

    return plan


def _route(app: FastAPI, gateway: Gateway, path: str, methods: list[str], summary: str,
           api: str, planner: Planner, documented: bool = True) -> None:
    door = PassthroughDoor(gateway, api, planner)

    async def endpoint(request: Request) -> Response:
        return await door(request)

    for method in methods:  # one operation each, so every OpenAPI operation id is unique
        operation = f"{method.lower()}{re.sub(r'[^a-z0-9]+', '_', path.lower())}".rstrip("_")
        app.add_api_route(path, endpoint, methods=[method], summary=summary,
                          operation_id=operation, include_in_schema=documented)
