"""POST /v1/responses: the OpenAI Responses door, on the same exchange as the chat door.

    request id ─► auth ─► body (responses_request.py) ─► admit: rate limit, budget on
    `responses_bound` ─► dispatch: breaker, retry, fallback ─► per target:
        speaks Responses (OpenAI)     passthrough: the client's bytes to `/responses`, the
                                      upstream's bytes back (ResponsesReader reads usage)
        chat only (Anthropic, vLLM,   translated: Responses → chat completions → the provider
        Ollama, the mock)             (which may translate on to Anthropic), and back
    ─► relay JSON / SSE ─► finish: usage, cost, grants, breaker, record (exchange.py)

A request a chat-only target cannot take — one that needs OpenAI's stored state
(`previous_response_id`, …), hosted tools, file inputs — is only sent to the route's targets
that speak Responses (routing.able_targets, before admission); with none, it is refused with a
400 that says why, and nothing is sent.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from circuit.accounting.bound import responses_bound
from circuit.errors import InvalidRequest, UpstreamFailed, UpstreamRejected
from circuit.gateway.chat_request import read_body
from circuit.gateway.door_flow import DoorFlow
from circuit.gateway.doors import RESPONSES
from circuit.gateway.exchange import Exchange
from circuit.gateway.relay import StreamRelay
from circuit.gateway.responses import UpstreamAnswer
from circuit.gateway.responses_request import ResponsesRequest, parse_responses_request
from circuit.gateway.routing import Target, able_targets
from circuit.providers.responses_chat import chat_request, responses_param, translated_body
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
        targets, chat = able_targets(targets, passes_through, lambda: _chat(ask, targets))
        await exchange.admit(key, ask.body, responses_bound(ask.body), targets)
        request_id = exchange.record.request_id
        translation = _Translation(ask, chat, request_id)

        def attempt(target: Target):
            if passes_through(target):
                return target.provider.forward(
                    Passthrough("/responses", _payload(ask, target.model), ask.stream,
                                request_id), ResponsesReader(target.provider.name))
            return translation.call(target)

        target, answer, permit = await gateway.dispatcher.call(
            targets, attempt, exchange.trace, exchange.started)
        exchange.served_by(target, permit,
                           "responses" if passes_through(target) else target.provider.wire)
        headers = {"x-circuit-provider": target.provider.name}
        if ask.stream:
            return StreamRelay(answer, exchange.tally(), exchange.stream_ended, headers,
                               door=RESPONSES)
        exchange.answered(answer.finish_reason)
        exchange.finish("ok", answer.usage, answer.text)
        return UpstreamAnswer(answer.body, target.provider.name)


def _chat(ask: ResponsesRequest, targets: list[Target]) -> dict[str, Any]:
    """The request in chat completions, for the targets that speak no Responses, or the
    InvalidRequest saying what they cannot take (OpenAI's stored state, first)."""
    if ask.stateful is not None:
        served = ", ".join(str(target) for target in targets)
        raise InvalidRequest(
            f"{ask.stateful}, but model {ask.model!r} is served by {served}, which does not "
            "speak the Responses API; Circuit keeps no responses of its own. Send the whole "
            "conversation in 'input' (with 'store': false), or use a model routed to OpenAI.",
            code="unsupported_parameter")
    return chat_request(ask.body)



class _Translation:
    """The calls to targets that speak no Responses: the request translated to chat
    completions once, before admission (`_chat`), each answer translated back."""

    def __init__(self, ask: ResponsesRequest, chat: dict[str, Any] | None,
                 request_id: str) -> None:
        self._ask = ask
        self._chat = chat
        self._raw = orjson.dumps(chat) if chat is not None else b""
        self._request_id = request_id

    async def call(self, target: Target) -> Completion | EventStream:
        ask = self._ask
        assert self._chat is not None, "a chat target is only kept when the request translates"
        call = Call(self._chat, self._raw, target.model, ask.stream, self._request_id,
                    translated=True)
        provider = target.provider
        try:
            if ask.stream:
                return TranslatedStream(await provider.open_stream(call),
                                        ResponsesWriter(ask.body, target.model))
            answer = await provider.complete(call)
        except UpstreamRejected as error:
            # The field at fault, as the client named it: it sent Responses, not chat.
            error.param = responses_param(error.param)
            raise
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
