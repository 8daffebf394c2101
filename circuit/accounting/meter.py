"""Meter: what a request may cost before the call, and what it did cost after it.

Before the call the gateway needs only a bound, not a count (`accounting.bound`): the body's
size in bytes bounds its tokens and costs microseconds, where an exact count costs ~100 µs per
thousand tokens. Only when a bound alone would be refused (a budget or a tokens-per-minute
limit) is the text counted exactly (`refine`, off the event loop). After the call the
provider's own usage settles the cost; only when there is none (no usage sent, a stream that
broke) is a local count needed, and that happens on the record writer's thread
(`settle_local_counts`), which tells the gateway the result (`counted`) to settle the request's
grants on its event loop. The tokenizers
(~70 MB) are loaded on first need, off the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from circuit.accounting.bound import RequestBound, billed_fields, json_bytes, tool_overhead
from circuit.accounting.pricing import PriceTable
from circuit.accounting.tokens import TokenCounter
from circuit.accounting.usage_checks import above_local_count
from circuit.wire import Usage

log = logging.getLogger("circuit.meter")

#: For a model whose tokenizer is not published (Claude, Llama, …) the local count is only
#: an estimate: twice it is taken as the bound, and never more than the bytes.
_ESTIMATE_FACTOR = 2


@dataclass(slots=True)
class LocalCount:
    """A job for the record writer's thread: count a finished request's tokens (its upstream
    sent no usage), before its record is written."""

    model: str
    messages: Any
    output_text: str
    #: What the request was granted, to settle once the count is known (opaque here).
    grants: Any = None


#: Told on the writer thread of each local count: (grants, usage, cost).
Counted = Callable[[Any, Usage, int | None], None]


class Meter:
    def __init__(self, prices: PriceTable,
                 load_counter: Callable[[], TokenCounter] = TokenCounter.load,
                 counted: Counted | None = None) -> None:
        self.prices = prices
        self._load_counter = load_counter
        self._counted = counted
        self._counter: TokenCounter | None = None
        self._lock = threading.Lock()

    @property
    def counter(self) -> TokenCounter:
        """The exact token counter, loaded on first use. Blocking: never on the event loop."""
        if self._counter is None:
            with self._lock:
                if self._counter is None:
                    self._counter = self._load_counter()
        return self._counter

    @property
    def counter_loaded(self) -> bool:
        """Whether counting is cheap now (the tokenizer is in memory)."""
        return self._counter is not None

    def cost_micros(self, model: str, usage: Usage) -> int | None:
        """Cost in micro-dollars, rounded up; None when the model has no price."""
        return self.prices.cost_micros(model, usage)

    def output_limit(self, model: str, bound: RequestBound) -> int:
        """The most output tokens a call to `model` may bill (every choice at its longest)."""
        return bound.output_tokens(self.prices.max_output_tokens(model))

    def tokens_needed(self, model: str, bound: RequestBound) -> int:
        """Tokens a call to `model` borrows from a tokens-per-minute bucket."""
        return bound.input_tokens(model) + self.output_limit(model, bound)

    def worst_case_micros(self, model: str, bound: RequestBound) -> int | None:
        """The most a call to `model` can cost; None when the model has no price."""
        return self.prices.worst_case_micros(model, bound.input_tokens(model),
                                             self.output_limit(model, bound))

    def refine(self, model: str, body: Mapping[str, Any], bound: RequestBound) -> RequestBound:
        """`bound` with its text part counted exactly: never above the byte bound, and, for a
        model whose tokenizer is not published, twice the estimate. Blocking: off the loop."""
        counter = self.counter
        counted = counter.count_messages(model, body.get("messages")) + tool_overhead(body)
        for value in billed_fields(body):
            # A schema's JSON takes more tokens than the signature an upstream renders it as.
            try:
                text = value if isinstance(value, str) else orjson.dumps(value).decode()
            except orjson.JSONEncodeError:  # nested past orjson's limit: keep its byte bound
                counted += json_bytes(value)
                continue
            counted += counter.count_text(model, text)
        if not counter.is_exact(model):
            counted *= _ESTIMATE_FACTOR
        return bound.with_text(min(counted, bound.text_tokens))

    def count_locally(self, model: str, messages: Any, output_text: str) -> Usage:
        """An exact count of what a request used. Blocking: off the event loop."""
        counter = self.counter
        return Usage(input_tokens=counter.count_messages(model, messages),
                     output_tokens=counter.count_text(model, output_text) if output_text else 0,
                     source="local")

    def settle_local_counts(self, records: Sequence) -> None:
        """Writer-thread hook: count the records that need it (and tell the event loop), and
        check reported usage against a local count where it looks too high."""
        for record in records:
            check = record.verify_output
            if check is not None:
                record.verify_output = None
                model, text, reported = check
                anomaly = above_local_count(reported, self.counter.count_text(model, text))
                if anomaly is not None:
                    record.usage_anomaly = anomaly
                    log.error("request %s: %s reported usage far above the text it sent "
                              "(%s); recorded as reported", record.request_id,
                              record.provider, anomaly)
            pending: LocalCount | None = record.local_count
            if pending is None:
                continue
            record.local_count = None
            usage = self.count_locally(pending.model, pending.messages, pending.output_text)
            cost = self.cost_micros(pending.model, usage)
            record.tokens_input = usage.input_tokens
            record.tokens_output = usage.output_tokens
            record.tokens_cached = 0
            record.usage_source = "local"
            record.cost_micros = cost
            if self._counted is not None:
                self._counted(pending.grants, usage, cost)
