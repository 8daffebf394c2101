"""POST /v1/chat/completions, top to bottom: the one place the request flow reads in order.

    request id (middleware) ─► auth ─► body ─► route ─► provider call ─► relay JSON / SSE
                                                                   └─► settle ─► record

Every request that reaches here leaves exactly one record, whatever happens to it.
"""

from __future__ import annotations

import logging
from time import perf_counter

from starlette.requests import Request
from starlette.responses import Response

from circuit.accounting.stream_tally import StreamTally
from circuit.accounting.usage import Usage
from circuit.errors import CircuitError, UpstreamError
from circuit.gateway.chat_request import ChatRequest, parse_chat_request, read_body
from circuit.gateway.relay import StreamOutcome, StreamRelay
from circuit.gateway.request_id import SCOPE_KEY, new_request_id
from circuit.gateway.responses import error_response
from circuit.gateway.runtime import Gateway
from circuit.providers.base import ChatCall
from circuit.store.records import RequestRecord
from circuit.store.sqlite import utc_now

log = logging.getLogger("circuit.gateway")


class ChatFlow:
    """The chat-completions endpoint."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, request: Request) -> Response:
        started = perf_counter()
        record = RequestRecord(request_id=request.scope.get(SCOPE_KEY) or new_request_id(),
                               timestamp=utc_now())
        try:
            return await self._handle(request, record, started)
        except CircuitError as error:
            self._finish_error(record, error, started)
            return error_response(error)
        except Exception as exc:
            log.error("request %s failed unexpectedly", record.request_id, exc_info=exc)
            error = CircuitError("The gateway failed unexpectedly; see its log.")
            self._finish_error(record, error, started)
            return error_response(error)

    async def _handle(self, request: Request, record: RequestRecord, started: float) -> Response:
        gateway = self.gateway
        key = gateway.keys.authenticate(request.headers.get("authorization"))
        record.key_name = key.name
        chat = parse_chat_request(await read_body(request, gateway.settings.max_body_bytes))
        record.model = chat.model
        record.stream = chat.stream

        target = gateway.router.targets(chat.model)[0]
        record.provider = target.provider.name
        record.upstream_model = target.model
        call = ChatCall(chat.body, chat.raw, target.model, chat.stream, record.request_id)
        headers = {"x-circuit-provider": target.provider.name}
        record.attempts = 1

        if chat.stream:
            stream = await target.provider.open_stream(call)
            return StreamRelay(
                stream, StreamTally(client_wants_usage=chat.include_usage),
                lambda tally, outcome: self._settle_stream(record, chat, started, tally, outcome),
                headers)

        completion = await target.provider.complete(call)
        usage = gateway.meter.measure(target.model, completion.usage, chat.messages,
                                      completion.text)
        record.finish_reason = completion.finish_reason
        self._finish(record, usage, started, status="ok", status_code=200)
        record.ttfb_ms = record.latency_ms
        return Response(completion.body, media_type="application/json", headers=headers)

    def _settle_stream(self, record: RequestRecord, chat: ChatRequest, started: float,
                       tally: StreamTally, outcome: StreamOutcome) -> None:
        """Charge what the stream used, whether it ended well, broke, or lost its client."""
        usage = self.gateway.meter.measure(record.upstream_model, tally.usage, chat.messages,
                                           tally.text)
        record.finish_reason = tally.finish_reason
        if outcome.first_byte_at is not None:
            record.ttfb_ms = round((outcome.first_byte_at - started) * 1000, 3)
        if outcome.status != "ok":
            record.partial_text = tally.text
        if outcome.error is not None:
            record.error_code = outcome.error.code
            record.error_message = outcome.error.message
        self._finish(record, usage, started, status=outcome.status, status_code=200)

    def _finish(self, record: RequestRecord, usage: Usage, started: float, *, status: str,
                status_code: int) -> None:
        record.status = status
        record.status_code = status_code
        record.tokens_input = usage.input_tokens
        record.tokens_output = usage.output_tokens
        record.tokens_cached = usage.cached_input_tokens
        record.usage_source = usage.source
        record.cost_micros = self.gateway.meter.cost_micros(record.upstream_model or "", usage)
        record.latency_ms = round((perf_counter() - started) * 1000, 3)
        self.gateway.writer.submit(record)

    def _finish_error(self, record: RequestRecord, error: CircuitError, started: float) -> None:
        record.status = "failed" if isinstance(error, UpstreamError) or error.status >= 500 \
            else "rejected"
        if error.status == 503:
            record.status = "rejected"
        record.status_code = error.status
        record.error_code = error.code
        record.error_message = error.message
        record.latency_ms = round((perf_counter() - started) * 1000, 3)
        self.gateway.writer.submit(record)
