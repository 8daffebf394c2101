"""POST /v1/responses: the OpenAI Responses door, on the same exchange as the chat door.

    request id ─► auth ─► body (responses_request.py) ─► admit: rate limit, budget on
    `responses_bound` ─► dispatch: breaker, retry, fallback ─► per target:
        speaks Responses (OpenAI)     passthrough: the client's bytes to `/responses`, the
                                      upstream's bytes back (ResponsesReader reads usage)
        chat only (Anthropic, vLLM,   translated: Responses → chat completions → the provider
        Ollama, the mock)             (which may translate on to Anthropic), and back
    ─► relay JSON / SSE ─► finish: usage, cost, grants, breaker, record (exchange.py)

A request that needs OpenAI's stored state (`previous_response_id`, …) is only sent to targets
that speak Responses; with none, it is refused with a 400 that says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from circuit.accounting.bound import responses_bound
from circuit.errors import InvalidRequest, UpstreamFailed
from circuit.gateway.chat_request import read_body
from circuit.gateway.door_flow import DoorFlow
from circuit.gateway.doors import RESPONSES, responses_door
from circuit.gateway.exchange import Exchange
from circuit.gateway.relay import StreamRelay
from circuit.gateway.responses_request import ResponsesRequest, parse_responses_request
from circuit.gateway.routing import Target
from circuit.providers.responses_chat import chat_request, translated_body
from circuit.providers.responses_chat_stream import ResponsesWriter, TranslatedStream
from circuit.providers.responses_wire import ResponsesReader
from circuit.wire import Call, Completion, EventStream, Passthrough


def passes_through(target: Target) -> bool:
    """Whether the target's upstream serves the Responses API itself."""
    return getattr(target.provider, "speaks_responses", False)


class ResponsesFlow(DoorFlow):
    """The Responses endpoint."""

    door = RESPONSES

    async def serve(self, request: Request, exchange: Exchange) -> Response:
        gateway = self.gateway
        key = self.authenticate(request, exchange)
        ask = parse_responses_request(await read_body(request, gateway.settings.max_body_bytes))
        targets = gateway.router.targets(ask.model)
        exchange.asks("responses", ask.model, ask.stream, ask.messages(), targets)
        targets = _able(ask, targets)
        await exchange.admit(key, ask.body, responses_bound(ask.body), targets)
        request_id = exchange.record.request_id
        translation = _Translation(ask, request_id)
        reader = _Readers()

        def attempt(target: Target):
            if passes_through(target):
                return target.provider.forward(
                    Passthrough("/responses", _payload(ask, target.model), ask.stream,
                                request_id), reader.new(target))
            return translation.call(target)

        target, answer, permit = await gateway.dispatcher.call(
            targets, attempt, exchange.trace, exchange.started)
        exchange.served_by(target, permit,
                           "responses" if passes_through(target) else target.provider.wire)
        headers = {"x-circuit-provider": target.provider.name}
        if ask.stream:
            door = responses_door(reader.next_sequence(answer))
            return StreamRelay(answer, exchange.tally(), exchange.stream_ended, headers,
                               door=door)
        exchange.answered(answer.finish_reason)
        exchange.finish("ok", answer.usage, answer.text)
        return Response(answer.body, media_type="application/json", headers=headers)


def _able(ask: ResponsesRequest, targets: list[Target]) -> list[Target]:
    """The targets that can serve the request: all of them, unless it needs OpenAI's stored
    state, which only a target speaking Responses has."""
    if ask.stateful is None:
        return targets
    able = [target for target in targets if passes_through(target)]
    if not able:
        served = ", ".join(str(target) for target in targets)
        error = InvalidRequest(
            f"{ask.stateful}, but model {ask.model!r} is served by {served}, which does not "
            "speak the Responses API; Circuit keeps no responses of its own. Send the whole "
            "conversation in 'input' (with 'store': false), or use a model routed to OpenAI.",
            code="unsupported_parameter")
        raise error
    return able


class _Readers:
    """The passthrough reader of each attempt: the one whose stream is relayed numbers the
    error event that may close it."""

    def __init__(self) -> None:
        self._last: ResponsesReader | None = None

    def new(self, target: Target) -> ResponsesReader:
        self._last = ResponsesReader(target.provider.name)
        return self._last

    def next_sequence(self, answer: object) -> Callable[[], int]:
        """The sequence number of the event after the last one of `answer`'s stream."""
        if isinstance(answer, TranslatedStream):
            writer = answer.writer
            return lambda: writer.sequence
        reader = self._last
        return lambda: reader.events.events if reader is not None and reader.events else 0


class _Translation:
    """The request in chat completions, for targets that speak no Responses: translated
    once, on the first such target (a request that only OpenAI can serve, with hosted tools
    say, is not refused while an OpenAI target may still take it)."""

    def __init__(self, ask: ResponsesRequest, request_id: str) -> None:
        self._ask = ask
        self._request_id = request_id
        self._chat: dict[str, Any] | None = None
        self._raw = b""

    async def call(self, target: Target) -> Completion | EventStream:
        ask = self._ask
        if self._chat is None:
            self._chat = chat_request(ask.body)
            self._raw = orjson.dumps(self._chat)
        call = Call(self._chat, self._raw, target.model, ask.stream, self._request_id,
                    translated=True)
        provider = target.provider
        if ask.stream:
            return TranslatedStream(await provider.open_stream(call),
                                    ResponsesWriter(ask.body, target.model))
        answer = await provider.complete(call)
        try:
            body = translated_body(answer.body, ask.body, answer.usage)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise UpstreamFailed(f"{provider.name} sent an unreadable answer",
                                 code="bad_upstream_response") from None
        return Completion(body, answer.usage, answer.finish_reason, answer.text)


def _payload(ask: ResponsesRequest, model: str) -> bytes:
    # The client's bytes untouched, unless the route names another upstream model.
    if ask.model == model:
        return ask.raw
    return orjson.dumps({**ask.body, "model": model})
