"""POST /v1/messages: the Anthropic Messages door, in the order of the chat door (flow.py).

    auth (x-api-key or Bearer) ─► body (messages_request.py) ─► the targets that can take it
    (a chat target only if it translates: routing.able_targets) ─► admit: rate limit, budget
    bound from max_tokens and the whole prompt ─► dispatch: breaker, retry, fallback
        ─► an Anthropic target: passthrough (provider.forward, bytes unchanged)
        ─► any other target: translated to chat completions and back (messages_translation)
    ─► relay JSON / SSE in Anthropic's framing ─► finish (exchange.py)

Errors answer in Anthropic's shape (doors.MESSAGES), so the Anthropic SDK raises its typed
exceptions.
"""

from __future__ import annotations

import re

import orjson
from starlette.requests import Request
from starlette.responses import Response

from circuit.accounting.bound import messages_bound
from circuit.gateway.auth import ClientKey
from circuit.gateway.chat_request import read_body
from circuit.gateway.door_flow import DoorFlow, identify
from circuit.gateway.doors import MESSAGES
from circuit.gateway.exchange import Exchange
from circuit.gateway.messages_request import (
    MessagesRequest,
    authenticate,
    parse_messages_request,
)
from circuit.gateway.relay import StreamRelay
from circuit.gateway.responses import UpstreamAnswer
from circuit.gateway.routing import Target, able_targets
from circuit.gateway.runtime import Gateway
from circuit.providers.anthropic_wire import MessagesReader
from circuit.providers.messages_chat import to_chat
from circuit.providers.messages_chat_stream import chat_answer_as_messages
from circuit.wire import Call, Passthrough

#: Client headers the Messages format needs upstream, forwarded as they came.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


def passthrough_headers(request: Request) -> dict[str, str]:
    return {name: value for name in FORWARDED_HEADERS
            if (value := request.headers.get(name)) is not None}


#: A query string passed on as it came (`?beta=true`, which the SDKs' beta clients and Claude
#: Code send); anything else is dropped rather than re-encoded.
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.=&-]{1,200}")


def upstream_path(request: Request, path: str) -> str:
    """`path`, with the client's query string when it is a plain one."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query and _PLAIN_QUERY.fullmatch(query) else path


def upstream_body(asked: MessagesRequest, model: str) -> bytes:
    """The client's bytes, unless the route names another upstream model (then the body
    with only `model` changed)."""
    if model == asked.model:
        return asked.raw
    return orjson.dumps({**asked.body, "model": model})


async def asked_for(gateway: Gateway, request: Request, exchange: Exchange, api: str, *,
                    require_max_tokens: bool = True
                    ) -> tuple[ClientKey, MessagesRequest, list[Target]]:
    """The first steps of the Messages door's endpoints: auth, body, what is asked (recorded
    under `api`) and the route's targets; admission is the endpoint's next step."""
    key = identify(exchange, lambda: authenticate(gateway.keys, request.headers))
    asked = parse_messages_request(await read_body(request, gateway.settings.max_body_bytes),
                                   require_max_tokens=require_max_tokens)
    targets = gateway.router.targets(asked.model)
    exchange.asks(api, asked.model, asked.stream, asked.counted, targets)
    return key, asked, targets


def passes_through(target: Target) -> bool:
    """Whether the target's upstream speaks the Messages API itself (Anthropic)."""
    return target.provider.wire == "messages"


class MessagesFlow(DoorFlow):
    """The Messages endpoint."""

    door = MESSAGES

    async def serve(self, request: Request, exchange: Exchange) -> Response:
        gateway = self.gateway
        key, asked, targets = await asked_for(gateway, request, exchange, "messages")
        targets, chat = able_targets(targets, passes_through,
                                     lambda: to_chat(asked.body, asked.model))
        await exchange.admit(key, asked.body, messages_bound(asked.body), targets)
        headers = passthrough_headers(request)
        path = upstream_path(request, "/v1/messages")
        request_id = exchange.record.request_id

        def attempt(target: Target):
            provider = target.provider
            if passes_through(target):
                return provider.forward(Passthrough(
                    path, upstream_body(asked, target.model), asked.stream,
                    request_id, headers), MessagesReader(provider.name))
            assert chat is not None, "a chat target is only kept when the request translates"
            body = {**chat, "model": target.model}
            call = Call(body, orjson.dumps(body), target.model, asked.stream, request_id,
                        translated=True)
            if asked.stream:
                return provider.open_stream(call)
            return provider.complete(call)

        target, answer, permit = await gateway.dispatcher.call(
            targets, attempt, exchange.trace, exchange.started)
        passed = passes_through(target)
        exchange.served_by(target, permit, "messages" if passed else "chat")
        out_headers = {"x-circuit-provider": target.provider.name}
        if not passed:
            answer = await chat_answer_as_messages(answer, asked.model, exchange.count_locally)
        if asked.stream:
            return StreamRelay(answer, exchange.tally(), exchange.stream_ended, out_headers,
                               door=MESSAGES)
        exchange.answered(answer.finish_reason)
        exchange.finish("ok", answer.usage, answer.text)
        return UpstreamAnswer(answer.body, target.provider.name)
