"""POST /v1/messages/count_tokens: passed through to an Anthropic target, else counted here.

A count costs nothing upstream, so it needs no price and borrows no budget (admitted with
`bills=False`), but it is a request like any other: it is authenticated, rate limited (requests
per minute), goes through the breaker, retries and fallback across the route's Anthropic
targets, and leaves one record (`api = 'count_tokens'`). When the route has no Anthropic target, the gateway counts
with its own tokenizer and says so: `x-circuit-token-count: local` (`provider` otherwise).
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response

from circuit.accounting.bound import RequestBound
from circuit.gateway.door_flow import DoorFlow
from circuit.gateway.doors import MESSAGES
from circuit.gateway.exchange import Exchange
from circuit.gateway.messages_flow import (
    asked_for,
    passes_through,
    passthrough_headers,
    upstream_body,
    upstream_path,
)
from circuit.gateway.routing import Target
from circuit.wire import Completion, Passthrough, Usage

#: What a count borrows of the key's tokens per minute: nothing but the gateway's margin.
_FREE = RequestBound(text_tokens=0, max_output=0, exact=True)

COUNT_HEADER = "x-circuit-token-count"


class CountReader:
    """The WireReader of a passed-through count: the answer is relayed as it came."""

    def completion(self, body: bytes) -> Completion:
        return Completion(body=body, usage=Usage(source="provider"))

    def transform(self, secret: str | None = None):
        raise NotImplementedError("count_tokens does not stream")


class CountTokensFlow(DoorFlow):
    """The count_tokens endpoint of the Messages door."""

    door = MESSAGES
    api = "count_tokens"  # a refused count is a count's record too, not a message's

    async def serve(self, request: Request, exchange: Exchange) -> Response:
        gateway = self.gateway
        key, asked, routed = await asked_for(gateway, request, exchange, "count_tokens",
                                             require_max_tokens=False)
        await exchange.admit(key, asked.body, _FREE, routed, bills=False)
        targets = [t for t in routed if passes_through(t)]
        if not targets:
            return await self._count_locally(exchange, asked, routed[0])
        headers = passthrough_headers(request)
        path = upstream_path(request, "/v1/messages/count_tokens")

        def attempt(target: Target):
            return target.provider.forward(Passthrough(
                path, upstream_body(asked, target.model), False,
                exchange.record.request_id, headers), CountReader())

        target, answer, permit = await gateway.dispatcher.call(
            targets, attempt, exchange.trace, exchange.started)
        exchange.served_by(target, permit, "count_tokens")
        exchange.answered(None)
        exchange.finish("ok", answer.usage, "")
        return Response(answer.body, media_type="application/json", headers={
            "x-circuit-provider": target.provider.name, COUNT_HEADER: "provider"})

    async def _count_locally(self, exchange: Exchange, asked, target: Target) -> Response:
        prompt = list(asked.counted)
        if asked.body.get("tools"):
            prompt.append({"role": "system", "content": orjson.dumps(asked.body["tools"])
                           .decode()})
        # The tokenizer may load on first use, and a count is CPU: off the event loop.
        usage = await asyncio.to_thread(self.gateway.meter.count_locally, target.model,
                                        prompt, "")
        exchange.answered(None)
        exchange.finish("ok", Usage(source="local"), "")
        return Response(orjson.dumps({"input_tokens": usage.input_tokens}),
                        media_type="application/json", headers={COUNT_HEADER: "local"})
