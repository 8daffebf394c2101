"""POST /v1/chat/completions, top to bottom: the one place the request flow reads in order.

    request id (middleware) ─► auth ─► body ─► rate limit ─► budget ─► breaker ─► provider
        ─► relay JSON / SSE ─► settle (budget, tokens, breaker) ─► record

Every request that reaches here leaves exactly one record, whatever happens to it, and every
admission it was granted (tokens borrowed, budget reserved, a breaker trial slot) is settled.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from circuit.accounting.bound import RequestBound, chat_bound
from circuit.accounting.budget import Reservation
from circuit.accounting.meter import LocalCount
from circuit.accounting.output_guard import OutputGuard
from circuit.accounting.pricing import usd_text
from circuit.accounting.stream_tally import StreamTally
from circuit.accounting.usage import Usage
from circuit.accounting.usage_checks import past_bound, worth_verifying
from circuit.errors import (
    CircuitError,
    ModelNotPriced,
    QuotaExceeded,
    ServiceUnavailable,
    UpstreamError,
)
from circuit.gateway.auth import ClientKey
from circuit.gateway.chat_request import ChatRequest, parse_chat_request, read_body
from circuit.gateway.dispatch import DispatchTrace
from circuit.gateway.relay import StreamOutcome, StreamRelay
from circuit.gateway.request_id import SCOPE_KEY, new_request_id
from circuit.gateway.responses import error_response
from circuit.gateway.routing import Target
from circuit.gateway.runtime import Gateway
from circuit.logs import current_request_id
from circuit.providers.base import ChatCall
from circuit.resilience.breaker import CircuitBreaker
from circuit.resilience.rate_limit import Limits
from circuit.store.records import RequestRecord
from circuit.store.timestamps import utc_now

log = logging.getLogger("circuit.gateway")


@dataclass(slots=True)
class Admission:
    """What a request was granted before its upstream call, to be settled after it."""

    key_name: str
    limits: Limits
    borrowed_tokens: int
    reservation: Reservation | None = None
    breaker: CircuitBreaker | None = None  # set once a call was let through
    #: What the serving target may bill at most (usage past these is an anomaly).
    input_limit: int | None = None
    output_limit: int | None = None


def _not_priced(model: str, limit_micros: int) -> ModelNotPriced:
    return ModelNotPriced(
        f"Model {model!r} has no price, so Circuit cannot bound what it would cost this key "
        f"(daily limit {usd_text(limit_micros)}). Price it in circuit.toml: "
        f'[prices."{model}"] with input = and output = in USD per million tokens (0 for a '
        'local model), or set a fallback price under [prices."*"].')


class ChatFlow:
    """The chat-completions endpoint."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, request: Request) -> Response:
        started = perf_counter()
        record = RequestRecord(request_id=request.scope.get(SCOPE_KEY) or new_request_id(),
                               timestamp=utc_now())
        current_request_id.set(record.request_id)
        admission: Admission | None = None
        gateway = self.gateway
        gateway.in_flight += 1
        try:
            key = gateway.keys.authenticate(request.headers.get("authorization"))
            record.key_name = key.name
            chat = parse_chat_request(await read_body(request, gateway.settings.max_body_bytes))
            record.model = chat.model
            record.stream = chat.stream
            targets = gateway.router.targets(chat.model)
            record.provider = targets[0].provider.name
            record.upstream_model = targets[0].model
            bound = chat_bound(chat.body)
            admission, bound = await self._admit(key, chat, targets, bound)

            def attempt(target: Target):
                call = ChatCall(chat.body, chat.raw, target.model, chat.stream,
                                record.request_id)
                if chat.stream:
                    return target.provider.open_stream(call)
                return target.provider.complete(call)

            trace = DispatchTrace()
            try:
                target, answer, admission.breaker = await gateway.dispatcher.call(
                    targets, attempt, trace, started)
            finally:
                record.attempts = trace.attempts
                if trace.failures:
                    record.attempt_errors = orjson.dumps(trace.failures).decode()
            record.provider = target.provider.name
            record.upstream_model = target.model
            headers = {"x-circuit-provider": target.provider.name}
            admission.input_limit = bound.input_tokens(target.model)
            admission.output_limit = gateway.meter.output_limit(target.model, bound)
            if chat.stream:

                def settle_stream(tally: StreamTally, outcome: StreamOutcome) -> None:
                    self._settle_stream(record, admission, chat.messages, started, tally,
                                        outcome)

                gateway.open_streams += 1
                guard = None
                if admission.reservation is not None:
                    model, meter = target.model, gateway.meter
                    guard = OutputGuard(admission.output_limit,
                                        lambda text: meter.counter.count_text(model, text),
                                        ready=lambda: meter.counter_loaded)
                return StreamRelay(answer, StreamTally(chat.include_usage, guard),
                                   settle_stream, headers)

            completion = answer
            record.finish_reason = completion.finish_reason
            record.ttfb_ms = round((perf_counter() - started) * 1000, 3)
            self._settle(record, admission, completion.usage, chat.messages, completion.text,
                         started, status="ok")
            return Response(completion.body, media_type="application/json", headers=headers)
        except CircuitError as error:
            self._refuse(record, admission, error, started)
            return error_response(error)
        except ClientDisconnect:
            # The client left before its request was whole: nothing to answer, nothing failed.
            record.status = "client_disconnected"
            record.status_code = 499
            record.error_code = "client_disconnected"
            record.latency_ms = round((perf_counter() - started) * 1000, 3)
            gateway.finish(record)
            return Response(status_code=499)
        except Exception as exc:
            log.error("request %s failed unexpectedly", record.request_id, exc_info=exc)
            error = CircuitError("The gateway failed unexpectedly; see its log.")
            self._refuse(record, admission, error, started)
            return error_response(error)

    async def _admit(self, key: ClientKey, chat: ChatRequest, targets: list[Target],
                     bound: RequestBound) -> tuple[Admission, RequestBound]:
        """Take the request's tokens and reserve its worst case, or raise the refusal.

        The bound is the body's byte size; when that alone would be refused (a small
        tokens-per-minute limit, the last of a budget), the text is counted exactly, off the
        loop, and admission is decided on the count."""
        gateway = self.gateway
        meter = gateway.meter
        limit = gateway.daily_limit_micros(key)
        if limit is not None:
            for target in targets:
                if not target.free and meter.prices.lookup(target.model) is None:
                    raise _not_priced(target.model, limit)
        limits = gateway.limits(key)
        first = targets[0].model
        if limits.tpm is not None and meter.tokens_needed(first, bound) > limits.tpm:
            bound = await asyncio.to_thread(meter.refine, first, chat.body, bound)
        admission = Admission(key.name, limits, meter.tokens_needed(first, bound))
        await gateway.limiter.admit(key.name, admission.limits, admission.borrowed_tokens)
        try:
            try:
                admission.reservation = await self._reserve(key.name, limit, targets, bound)
            except QuotaExceeded:
                if bound.exact:
                    raise
                bound = await asyncio.to_thread(meter.refine, first, chat.body, bound)
                admission.reservation = await self._reserve(key.name, limit, targets, bound)
        except BaseException:
            gateway.limiter.settle(key.name, limits, admission.borrowed_tokens, 0)
            raise
        return admission, bound

    async def _reserve(self, key_name: str, limit: int | None, targets: list[Target],
                       bound: RequestBound) -> Reservation | None:
        # The largest worst case among the targets: any of them may end up serving.
        worst = [self.gateway.meter.worst_case_micros(t.model, bound) for t in targets]
        priced = [cost for cost in worst if cost is not None]
        return await self.gateway.ledger.reserve(key_name, limit, max(priced) if priced else None)

    def _settle_stream(self, record: RequestRecord, admission: Admission, messages: Any,
                       started: float, tally: StreamTally, outcome: StreamOutcome) -> None:
        """Charge what the stream used, whether it ended well, broke, or lost its client."""
        self.gateway.open_streams -= 1
        record.finish_reason = tally.finish_reason
        if outcome.first_byte_at is not None:
            record.ttfb_ms = round((outcome.first_byte_at - started) * 1000, 3)
        if outcome.status != "ok":
            record.partial_text = tally.text
        if outcome.error is not None:
            record.error_code = outcome.error.code
            record.error_message = outcome.error.message
        self._settle(record, admission, tally.usage, messages, tally.text, started,
                     status=outcome.status, failure=outcome.error)

    def _settle(self, record: RequestRecord, admission: Admission, usage: Usage | None,
                messages: Any, output_text: str, started: float, *, status: str,
                failure: CircuitError | None = None) -> None:
        """Charge the answer: the provider's usage now, or a local count on the writer thread
        (the budget and the token bucket are settled when it is known)."""
        gateway = self.gateway
        record.status = status
        record.status_code = 200

        def charge(usage: Usage, cost: int | None) -> None:
            gateway.ledger.settle(admission.reservation, cost)
            gateway.limiter.settle(admission.key_name, admission.limits,
                                   admission.borrowed_tokens,
                                   usage.input_tokens + usage.output_tokens)

        if usage is not None:
            record.tokens_input = usage.input_tokens
            record.tokens_output = usage.output_tokens
            record.tokens_cached = usage.cached_input_tokens
            record.usage_source = usage.source
            record.cost_micros = gateway.meter.cost_micros(record.upstream_model, usage)
            record.usage_anomaly = past_bound(usage, admission.input_limit,
                                              admission.output_limit)
            if record.usage_anomaly is not None:
                log.error("request %s: %s reported usage past what the request could bill "
                          "(%s); recorded as reported", record.request_id, record.provider,
                          record.usage_anomaly)
            elif worth_verifying(usage, output_text):
                record.verify_output = (record.upstream_model, output_text,
                                        usage.output_tokens - usage.reasoning_tokens)
            charge(usage, record.cost_micros)
        else:
            record.local_count = LocalCount(record.upstream_model, messages, output_text,
                                            asyncio.get_running_loop(), charge)
        breaker = admission.breaker
        if breaker is not None:
            if status == "ok":
                breaker.record_success()
            elif status == "client_disconnected" or failure is None or \
                    failure.code == "gateway_shutdown":
                breaker.record_abandoned()
            else:
                breaker.record_failure(failure.code)
        record.latency_ms = round((perf_counter() - started) * 1000, 3)
        gateway.finish(record)

    def _refuse(self, record: RequestRecord, admission: Admission | None, error: CircuitError,
                started: float) -> None:
        """Record a request that ended in an error response, and release what it held."""
        upstream_failed = isinstance(error, UpstreamError) or error.status >= 500 \
            and not isinstance(error, ServiceUnavailable)
        record.status = "failed" if upstream_failed else "rejected"
        record.status_code = error.status
        record.error_code = error.code
        record.error_message = error.message
        if admission is not None:
            gateway = self.gateway
            gateway.ledger.settle(admission.reservation, 0)
            gateway.limiter.settle(admission.key_name, admission.limits,
                                   admission.borrowed_tokens, 0)
            if admission.breaker is not None:
                # An answer was in hand when this failed: the provider is not to blame.
                admission.breaker.record_abandoned()
        record.latency_ms = round((perf_counter() - started) * 1000, 3)
        self.gateway.finish(record)
