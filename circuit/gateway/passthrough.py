"""PassthroughDoor: an OpenAI endpoint beside chat, passed through to the provider as it is.

Every such door is a DoorFlow (door_flow.py) that runs the chat door's steps (flow.py) with
the exchange and the dispatcher —
auth, rate limits, budget reservation, breaker, retries, fallback, one record — and differs
only in its `DoorPlan`: which targets may serve, the request's bound, the path and body that
go upstream, and the reader of the answer (circuit/providers/openai_passthrough.py). The plans
of the OpenAI surface are in openai_surface.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from circuit.accounting.bound import RequestBound
from circuit.gateway.auth import ClientKey
from circuit.gateway.door_flow import DoorFlow
from circuit.gateway.doors import CHAT, MESSAGES, Door
from circuit.gateway.exchange import Exchange
from circuit.gateway.relay import StreamRelay
from circuit.gateway.responses import UpstreamAnswer
from circuit.gateway.routing import Target
from circuit.gateway.runtime import Gateway
from circuit.wire import Passthrough, Usage, WireReader


@dataclass(slots=True)
class DoorPlan:
    """What one request of a door asks for, and how it goes upstream."""

    api: str  # the door, as recorded (`requests.api`)
    upstream_api: str  # the wire format that goes upstream (`requests.upstream_api`)
    model: str | None
    targets: list[Target]
    bound: RequestBound
    #: The request as it goes to one target (the body may name the target's model).
    passthrough: Callable[[Target], Passthrough]
    reader: WireReader
    stream: bool = False
    body: dict = field(default_factory=dict)  # the JSON body, for the exchange's checks
    media_type: str = "application/json"
    #: Usage to charge when the answer reports none (None: counted locally, as chat).
    unreported: Callable[[Target], Usage] | None = None
    #: What a local count counts as the prompt (chat-shaped messages), when it must.
    messages: Any = None


#: Reads the request (its body, path, query) into a plan for the caller; raises CircuitError.
Planner = Callable[[Gateway, Request, ClientKey], Awaitable[DoorPlan]]


class PassthroughDoor(DoorFlow):
    """One endpoint, recorded as door `api`: `planner` says what is asked; the rest is the
    same for every door. Errors are in OpenAI's shape (the CHAT door's) and the key comes as
    `Authorization: Bearer`; with `shape=MESSAGES`, Anthropic's errors and its `x-api-key`
    too (an Anthropic client's GET /v1/models/{id})."""

    def __init__(self, gateway: Gateway, api: str, planner: Planner,
                 shape: Door = CHAT) -> None:
        super().__init__(gateway)
        # The shape's errors and framing under this door's name: the record's `api` from the
        # request's first step (DoorFlow sets it).
        self.door = replace(shape, name=api)
        self._anthropic = shape is MESSAGES
        self.planner = planner

    async def serve(self, request: Request, exchange: Exchange) -> Response:
        gateway = self.gateway
        key = (self.authenticate_anthropic(request, exchange) if self._anthropic
               else self.authenticate(request, exchange))
        plan = await self.planner(gateway, request, key)
        exchange.asks(plan.api, plan.model, plan.stream, plan.messages, plan.targets)
        await exchange.admit(key, plan.body, plan.bound, plan.targets)

        def attempt(target: Target):
            return target.provider.forward(plan.passthrough(target), plan.reader)

        target, answer, permit = await gateway.dispatcher.call(
            plan.targets, attempt, exchange.trace, exchange.started)
        exchange.served_by(target, permit, plan.upstream_api)
        headers = {"x-circuit-provider": target.provider.name}
        if plan.stream:
            return StreamRelay(answer, exchange.tally(), exchange.stream_ended, headers,
                               door=self.door)
        usage = answer.usage
        if usage is None and plan.unreported is not None:
            usage = plan.unreported(target)
        exchange.answered(answer.finish_reason)
        exchange.finish("ok", usage, answer.text)
        return UpstreamAnswer(answer.body, target.provider.name, plan.media_type)
