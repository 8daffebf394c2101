"""Meter: what a request may cost before the call, and what it did cost after it.

Before the call the gateway needs only a bound, not a count: a byte-level BPE token covers at
least one byte, so a prompt's UTF-8 size (plus the chat formula's few tokens per message) is an
upper bound on its tokens that costs a microsecond, where an exact count costs ~100 µs per
thousand tokens on the event loop. After the call the provider's own usage settles the cost;
only when there is none (no usage sent, a stream that broke) is an exact local count needed,
and that happens on the record writer's thread (`settle_local_counts`), which then hands the
result back to the event loop. The tokenizers (~70 MB) are loaded on first need, off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from circuit.accounting.pricing import PriceTable
from circuit.accounting.tokens import TokenCounter
from circuit.accounting.usage import Usage

#: Tokens the chat formula adds: per message, per name, and to prime the reply.
_PER_MESSAGE, _PER_NAME, _PRIMING = 3, 1, 3
#: Room for tokens an upstream counts that the local formula does not see.
_UPSTREAM_MARGIN = 16


@dataclass(slots=True)
class LocalCount:
    """A finished request whose tokens must be counted locally before it is recorded."""

    model: str
    messages: Any
    output_text: str
    loop: asyncio.AbstractEventLoop
    #: Called on the event loop with the counted usage and cost, once they are known.
    on_counted: Callable[[Usage, int | None], None]


class Meter:
    def __init__(self, prices: PriceTable,
                 load_counter: Callable[[], TokenCounter] = TokenCounter.load) -> None:
        self.prices = prices
        self._load_counter = load_counter
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

    def prompt_bound(self, messages: Any) -> int:
        """An upper bound on the prompt's tokens, from its size in bytes."""
        total = _PRIMING
        if not isinstance(messages, list):
            return total
        for message in messages:
            total += _PER_MESSAGE
            if isinstance(message, dict):
                for key, value in message.items():
                    total += _bound(value) + (_PER_NAME if key == "name" else 0)
        return total

    def cost_micros(self, model: str, usage: Usage) -> int | None:
        """Cost in micro-dollars, rounded up; None when the model has no price."""
        return self.prices.cost_micros(model, usage)

    def worst_case_micros(self, model: str, prompt_bound: int,
                          max_tokens: int | None) -> int | None:
        """The most a call can cost: its prompt and `max_tokens` (or the model's output cap)."""
        output = max_tokens if max_tokens is not None else self.prices.max_output_tokens(model)
        return self.prices.worst_case_micros(model, prompt_bound + _UPSTREAM_MARGIN, output)

    def count_prompt(self, model: str, messages: Any) -> int:
        """An exact count of a prompt's tokens. Blocking (it may load the tokenizers): off the
        event loop."""
        return self.counter.count_messages(model, messages)

    def count_locally(self, model: str, messages: Any, output_text: str) -> Usage:
        """An exact count of what a request used. Blocking: off the event loop."""
        counter = self.counter
        return Usage(input_tokens=counter.count_messages(model, messages),
                     output_tokens=counter.count_text(model, output_text) if output_text else 0,
                     source="local")

    def settle_local_counts(self, records: Sequence) -> None:
        """Writer-thread hook: count the records that need it, then tell the event loop."""
        for record in records:
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
            # A closed loop (shutdown) has nothing left to settle.
            with contextlib.suppress(RuntimeError):
                pending.loop.call_soon_threadsafe(pending.on_counted, usage, cost)


def _bound(value: Any) -> int:
    # Iterative: client JSON may nest as deep as the parser allows (1,024 levels).
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            # Media parts are tokenized upstream by rules of their own, and not by a local
            # count either: their (base64) bytes would only inflate the bound.
            stack.extend(v for k, v in item.items() if k not in _MEDIA)
    return total


_MEDIA = frozenset({"image_url", "input_audio", "file", "image", "audio"})
