"""POST /v1/chat/completions, top to bottom: the one place the request flow reads in order.

    request id (request_id.py) ─► the door's envelope: exchange, errors in its shape
        (door_flow.py) ─► auth (auth.py) ─► body (chat_request.py)
        ─► admit: rate limit, budget (exchange.py) ─► dispatch: breaker, retry, fallback
           (dispatch.py) ─► provider (providers/*) ─► relay JSON / SSE (relay.py, framed
           as the door declares in doors.py)
        ─► finish: usage, cost, grants settled, breaker told, record (exchange.py)
        ─► record writer (store/writer.py)

A streaming request passes through these files and back up none: the relay ends by calling the
exchange's `stream_ended`, its end-of-response hook. Every request that reaches here leaves
exactly one record, whatever happens to it, and every grant it was given is settled once.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from circuit.accounting.bound import chat_bound
from circuit.gateway.chat_request import parse_chat_request, read_body
from circuit.gateway.door_flow import DoorFlow
from circuit.gateway.doors import CHAT
from circuit.gateway.exchange import Exchange
from circuit.gateway.relay import StreamRelay
from circuit.gateway.responses import UpstreamAnswer
from circuit.gateway.routing import Target, takers
from circuit.wire import Call


class ChatFlow(DoorFlow):
    """The chat-completions endpoint."""

    door = CHAT

    async def serve(self, request: Request, exchange: Exchange) -> Response:
        gateway = self.gateway
        key = self.authenticate(request, exchange)
        chat = parse_chat_request(await read_body(request, gateway.settings.max_body_bytes))
        targets = gateway.router.targets(chat.model)
        exchange.asks("chat", chat.model, chat.stream, chat.messages, targets)
        # A target whose provider cannot express the body (Anthropic and `n` > 1) is passed
        # over before any call; with none left, the 400 is the gateway's own.
        targets = takers(targets, lambda target: target.provider.takes(chat.body))
        await exchange.admit(key, chat.body, chat_bound(chat.body), targets)

        def attempt(target: Target):
            call = Call(chat.body, chat.raw, target.model, chat.stream,
                        exchange.record.request_id)
            if chat.stream:
                return target.provider.open_stream(call)
            return target.provider.complete(call)

        target, answer, permit = await gateway.dispatcher.call(
            targets, attempt, exchange.trace, exchange.started)
        exchange.served_by(target, permit, target.provider.wire)
        headers = {"x-circuit-provider": target.provider.name}
        if chat.stream:
            return StreamRelay(answer, exchange.tally(), exchange.stream_ended, headers)
        exchange.answered(answer.finish_reason)
        exchange.finish("ok", answer.usage, answer.text)
        return UpstreamAnswer(answer.body, target.provider.name)
