"""Stored responses (`GET|DELETE /v1/responses/{id}`, `…/cancel`, `…/input_items`,
`POST /v1/responses/input_tokens`): OpenAI keeps them, so they go to a provider that speaks
the Responses API, as they are, billing nothing. Circuit keeps no responses of its own: a
response made by a translated target was never stored.
"""

from __future__ import annotations

from starlette.requests import Request

from circuit.errors import NotFound
from circuit.gateway.auth import ClientKey
from circuit.gateway.openai_surface import forwarded
from circuit.gateway.passthrough import DoorPlan
from circuit.gateway.routing import Target
from circuit.gateway.runtime import Gateway

_PLAN = forwarded("responses")


def responses_target(gateway: Gateway) -> Target:
    """The default provider when it speaks Responses, else the first that does."""
    router = gateway.router
    candidates = [router.default, *router.providers.values()]
    provider = next((p for p in candidates if getattr(p, "speaks_responses", False)), None)
    if provider is None:
        raise NotFound("No provider that speaks the Responses API is configured, and Circuit "
                       "keeps no responses of its own")
    return Target(provider, "", free=True)


async def stored_responses(gateway: Gateway, request: Request, key: ClientKey) -> DoorPlan:
    """The request as sent, to the provider that keeps responses."""
    target = responses_target(gateway)  # first: a gateway with none answers 404 at once
    plan = await _PLAN(gateway, request, key)
    plan.targets = [target]
    plan.upstream_api = "responses"
    return plan
