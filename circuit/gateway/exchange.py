"""Exchange: one request, from its arrival to its record.

It owns what the request was granted — tokens borrowed from the key's bucket, budget reserved,
the breaker's permit for the call that served it — and its record. Its steps are the only place
a record is filled in, a grant settled and a counter moved:

    Exchange(gateway, request_id, watch)  in flight
    .caller(key) / .asks(chat, targets)  who asks for what (the body is in: the client is
                                       watched from here, circuit.gateway.client_watch)
    await .admit(key, chat, targets)   rate limit, then budget (or the refusal is raised)
    .served_by(target, permit, api)    the target that answered, its permit, the wire it spoke
    .finish(status, usage, text)       usage and cost recorded, grants settled, permit told
    .refuse(error, status)             an error answer: grants released, permit abandoned
    .stream_ended(tally, outcome)      the relay's end-of-stream hook: .finish for a stream
    .cut_off(error, status)            cancelled unanswered: the client left, or the server
                                       stopped past its grace period

Every grant is settled exactly once whatever happens: a Grants object and a Permit ignore a
second settlement, so no path "owes" one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import orjson

from circuit.accounting.bound import RequestBound
from circuit.accounting.budget import Reservation
from circuit.accounting.meter import LocalCount
from circuit.accounting.output_guard import OutputGuard
from circuit.accounting.stream_tally import StreamTally
from circuit.accounting.usage_checks import past_bound, worth_verifying
from circuit.errors import (
    CircuitError,
    ModelNotPriced,
    QuotaExceeded,
    ServiceUnavailable,
    UpstreamError,
)
from circuit.gateway.auth import ClientKey
from circuit.gateway.client_watch import ClientWatch
from circuit.gateway.dispatch import DispatchTrace
from circuit.gateway.relay import StreamOutcome
from circuit.gateway.routing import Target
from circuit.gateway.runtime import Gateway
from circuit.money import usd_text
from circuit.resilience.breaker import Permit
from circuit.resilience.rate_limit import Limits
from circuit.store.records import RequestRecord
from circuit.store.timestamps import utc_now
from circuit.wire import Usage

log = logging.getLogger("circuit.gateway")


@dataclass(slots=True)
class Grants:
    """What a request was granted before its call: settled once, to what it used."""

    key_name: str
    limits: Limits
    borrowed_tokens: int
    reservation: Reservation | None = None
    settled: bool = False

    def settle(self, gateway: Gateway, used_tokens: int, cost_micros: int | None) -> None:
        """Keep what was used of the budget and the bucket, release the rest (once)."""
        if self.settled:
            return
        self.settled = True
        gateway.ledger.settle(self.reservation, cost_micros)
        gateway.limiter.settle(self.key_name, self.limits, self.borrowed_tokens, used_tokens)


class Exchange:
    """One request's owner (see the module docstring)."""

    def __init__(self, gateway: Gateway, request_id: str,
                 watch: ClientWatch | None = None) -> None:
        self.gateway = gateway
        self.watch = watch
        self.started = perf_counter()
        self.record = RequestRecord(request_id=request_id, timestamp=utc_now())
        self.grants: Grants | None = None
        self.permit: Permit | None = None
        self.trace = DispatchTrace(watch=watch)
        self.bound: RequestBound | None = None
        self._messages: Any = None
        #: What the serving target may bill at most (usage past these is an anomaly).
        self._input_limit: int | None = None
        self._output_limit: int | None = None
        self._streaming = False
        self._closed = False
        gateway.in_flight += 1

    # -- asking ---------------------------------------------------------------------------------

    def caller(self, key: ClientKey | None, name: str | None = None) -> None:
        self.record.key_name = key.name if key is not None else name

    def asks(self, api: str, model: str, stream: bool, messages: Any,
             targets: list[Target]) -> None:
        """What is asked for, by which door (`api`): the model, a stream or not, and the
        messages a local count would count."""
        record = self.record
        record.api, record.model, record.stream = api, model, stream
        record.provider, record.upstream_model = targets[0].provider.name, targets[0].model
        self._messages = messages
        if self.watch is not None:
            self.watch.start(cancel=stream)

    async def admit(self, key: ClientKey, body: dict[str, Any], bound: RequestBound,
                    targets: list[Target], *, bills: bool = True) -> None:
        """Take the request's tokens and reserve its worst case, or raise the refusal.

        `bound` is the door's bound of the body (circuit/accounting/bound.py), from its byte
        size; when that alone would be refused (a small tokens-per-minute limit, the last of
        a budget) and the door's text can be counted exactly (`bound.countable`), it is, off
        the loop, and admission is decided on the count. A request that `bills` nothing (a
        token count) is only rate limited: it needs no price and reserves no budget."""
        gateway = self.gateway
        # The targets that can take the request (a route's first may have been passed over):
        # a refusal from here on is recorded against the first of them.
        self.record.provider, self.record.upstream_model = targets[0].provider.name, \
            targets[0].model
        meter = gateway.meter
        limit = gateway.daily_limit_micros(key) if bills else None
        if limit is not None:
            for target in targets:
                if not target.free and meter.prices.lookup(target.model) is None:
                    raise _not_priced(target.model, limit)
        limits = gateway.limits(key)
        first = targets[0].model
        needed = meter.tokens_needed(first, bound)
        if limits.tpm is not None and needed > limits.tpm and bound.countable:
            bound = await asyncio.to_thread(meter.refine, first, body, bound)
            needed = meter.tokens_needed(first, bound)
        grants = Grants(key.name, limits, needed)
        await gateway.limiter.admit(key.name, limits, grants.borrowed_tokens)
        self.grants = grants  # from here on, whatever happens releases the tokens
        try:
            grants.reservation = await self._reserve(key.name, limit, targets, bound)
        except QuotaExceeded:
            if bound.exact or not bound.countable:
                raise
            bound = await asyncio.to_thread(meter.refine, first, body, bound)
            grants.reservation = await self._reserve(key.name, limit, targets, bound)
        self.bound = bound

    async def _reserve(self, key_name: str, limit: int | None, targets: list[Target],
                       bound: RequestBound) -> Reservation | None:
        # The largest worst case among the targets: any of them may end up serving.
        worst = [self.gateway.meter.worst_case_micros(t.model, bound) for t in targets]
        priced = [cost for cost in worst if cost is not None]
        return await self.gateway.ledger.reserve(key_name, limit, max(priced) if priced else None)

    # -- answering ------------------------------------------------------------------------------

    def served_by(self, target: Target, permit: Permit, upstream_api: str) -> None:
        """The target that answered, the permit its breaker gave the call, and the wire
        format the call went upstream in."""
        self._trace_attempts()
        self.permit = permit
        record = self.record
        record.provider, record.upstream_model = target.provider.name, target.model
        record.upstream_api = upstream_api
        assert self.bound is not None, "admitted before served"
        self._input_limit = self.bound.input_tokens(target.model)
        self._output_limit = self.gateway.meter.output_limit(target.model, self.bound)

    def tally(self) -> StreamTally:
        """The tally of the stream about to be relayed; the stream counts as open from here."""
        self._streaming = True
        self.gateway.open_streams += 1
        guard = None
        if self.grants is not None and self.grants.reservation is not None:
            meter, model = self.gateway.meter, self.record.upstream_model
            guard = OutputGuard(self._output_limit or 0,
                                lambda text: meter.counter.count_text(model, text),
                                ready=lambda: meter.counter_loaded)
        return StreamTally(guard)

    async def count_locally(self, output_text: str) -> Usage:
        """What a local count bills for the request with `output_text` (its input: the
        messages `asks` named, for the target that answered), counted off the event loop; for
        a door that must show the client the usage its record bills."""
        return await asyncio.to_thread(self.gateway.meter.count_locally,
                                       self.record.upstream_model, self._messages, output_text)

    def stream_ended(self, tally: StreamTally, outcome: StreamOutcome) -> None:
        """The relay's hook: charge what the stream used, whether it ended well, broke, or
        lost its client."""
        record = self.record
        record.finish_reason = tally.finish_reason
        if outcome.first_byte_at is not None:
            record.ttfb_ms = round((outcome.first_byte_at - self.started) * 1000, 3)
        if outcome.status != "ok":
            record.partial_text = tally.text
        if outcome.error is not None:
            record.error_code = outcome.error.code
            record.error_message = outcome.error.message
        self.finish(outcome.status, tally.usage, tally.text, failure=outcome.error)

    def answered(self, finish_reason: str | None) -> None:
        """A JSON answer is about to go out: its first byte is now."""
        self.record.finish_reason = finish_reason
        self.record.ttfb_ms = round((perf_counter() - self.started) * 1000, 3)

    def finish(self, status: str, usage: Usage | None, output_text: str, *,
               failure: CircuitError | None = None) -> None:
        """The answer is out: record its usage and cost (or have them counted on the writer
        thread), settle the grants, tell the permit how the call went."""
        record = self.record
        record.status = status
        record.status_code = 200
        if usage is not None:
            self._charge(usage, output_text)
        else:
            record.local_count = LocalCount(record.upstream_model, self._messages, output_text,
                                            self.grants)
        permit = self.permit
        if permit is not None:
            if status == "ok":
                permit.success()
            elif status == "client_disconnected" or failure is None or \
                    failure.code == "gateway_shutdown":
                permit.abandoned()
            else:
                permit.failure(failure.code)
        self._close()

    def _charge(self, usage: Usage, output_text: str) -> None:
        gateway, record = self.gateway, self.record
        record.tokens_input = usage.input_tokens
        record.tokens_output = usage.output_tokens
        record.tokens_cached = usage.cached_input_tokens
        record.usage_source = usage.source
        record.cost_micros = gateway.meter.cost_micros(record.upstream_model, usage)
        record.usage_anomaly = past_bound(usage, self._input_limit, self._output_limit)
        if record.usage_anomaly is not None:
            log.error("request %s: %s reported usage past what the request could bill (%s); "
                      "recorded as reported", record.request_id, record.provider,
                      record.usage_anomaly)
        elif worth_verifying(usage, output_text):
            record.verify_output = (record.upstream_model, output_text,
                                    usage.output_tokens - usage.reasoning_tokens)
        if self.grants is not None:
            self.grants.settle(gateway, usage.input_tokens + usage.output_tokens,
                               record.cost_micros)

    def refuse(self, error: CircuitError, status: int) -> None:
        """Record a request that ended in an error response, answered with `status` (the
        door's for the error: Anthropic's 529 where the error's own is 502), and release what
        it held."""
        self._trace_attempts()
        record = self.record
        upstream_failed = isinstance(error, UpstreamError) or error.status >= 500 \
            and not isinstance(error, ServiceUnavailable)
        record.status = "failed" if upstream_failed else "rejected"
        record.status_code = status
        record.error_code = error.code
        record.error_message = error.message
        if self.grants is not None:
            self.grants.settle(self.gateway, 0, 0)
        if self.permit is not None:
            # An answer was in hand when this failed: the provider is not to blame.
            self.permit.abandoned()
        self._close()

    def client_left(self) -> None:
        """The client went away before its request was whole: nothing to answer."""
        record = self.record
        record.status, record.status_code = "client_disconnected", 499
        record.error_code = "client_disconnected"
        if self.grants is not None:
            self.grants.settle(self.gateway, 0, 0)
        self._close()

    def cut_off(self, error: CircuitError | None = None, status: int = 499) -> None:
        """The request was cancelled before its answer: a stream's client hung up (`error`
        None: a 499), or the server stopped past its grace period (`error`, answered with
        `status`). Cut during an upstream call it is charged as a stream cut before its first
        event, its input counted locally (the upstream may bill it); a JSON request with a
        budget is charged what it reserved. Cut between calls (a retry's backoff, every call
        so far refused) it is charged nothing: no upstream is working on it."""
        if self._closed:
            return
        self._trace_attempts()
        record = self.record
        if error is not None:  # a hang-up (None) is written as every one is, by _close
            record.status, record.status_code = "failed", status
            record.error_code, record.error_message = error.code, error.message
        grants = self.grants
        if grants is not None:
            reservation = grants.reservation
            if not self.trace.calling() or record.upstream_model is None:
                grants.settle(self.gateway, 0, 0)
            elif not record.stream and reservation is not None:
                # A JSON answer cut (only the server cuts one) may still be finished, and
                # billed, upstream: what it reserved is kept, so the ceiling holds.
                record.cost_micros = reservation.amount
                grants.settle(self.gateway, grants.borrowed_tokens, reservation.amount)
            else:
                record.local_count = LocalCount(record.upstream_model, self._messages, "",
                                                grants)
        self._close()

    def _trace_attempts(self) -> None:
        self.record.attempts = self.trace.attempts
        if self.trace.failures:
            self.record.attempt_errors = orjson.dumps(self.trace.failures).decode()

    def _close(self) -> None:
        if self._closed:  # one record per request, whatever called twice
            return
        self._closed = True
        gateway = self.gateway
        record = self.record
        if self.watch is not None and self.watch.gone:
            # The client hung up while its answer was awaited: it received nothing, whatever
            # the upstream did (charged as it answered; the attempts say how that went).
            record.status, record.status_code = "client_disconnected", 499
            record.error_code, record.ttfb_ms = "client_disconnected", None
        record.latency_ms = round((perf_counter() - self.started) * 1000, 3)
        gateway.in_flight -= 1
        if self._streaming:
            self._streaming = False
            gateway.open_streams -= 1
        gateway.writer.submit(record)


def _not_priced(model: str, limit_micros: int) -> ModelNotPriced:
    return ModelNotPriced(
        f"Model {model!r} has no price, so Circuit cannot bound what it would cost this key "
        f"(daily limit {usd_text(limit_micros)}). Price it in circuit.toml: "
        f'[prices."{model}"] with input = and output = in USD per million tokens (0 for a '
        'local model), or set a fallback price under [prices."*"].')
