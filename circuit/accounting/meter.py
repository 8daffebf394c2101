"""Meter: the usage and cost of an answer, from the provider's counts or, failing them, ours."""

from __future__ import annotations

from typing import Any

from circuit.accounting.pricing import PriceTable
from circuit.accounting.tokens import TokenCounter
from circuit.accounting.usage import Usage


class Meter:
    def __init__(self, counter: TokenCounter, prices: PriceTable) -> None:
        self.counter = counter
        self.prices = prices

    def prompt_tokens(self, model: str, messages: Any) -> int:
        """The prompt's tokens, counted locally (exact for OpenAI models)."""
        return self.counter.count_messages(model, messages)

    def measure(self, model: str, reported: Usage | None, prompt_tokens: int,
                output_text: str) -> Usage:
        """The provider's usage when it gave one, else an exact local count."""
        if reported is not None:
            return reported
        return Usage(input_tokens=prompt_tokens,
                     output_tokens=self.counter.count_text(model, output_text) if output_text
                     else 0,
                     source="local")

    def cost_micros(self, model: str, usage: Usage) -> int | None:
        """Cost in micro-dollars, rounded up; None when the model has no price."""
        return self.prices.cost_micros(model, usage)

    def worst_case_micros(self, model: str, prompt_tokens: int,
                          max_tokens: int | None) -> int | None:
        """The most a call can cost: its prompt (with a margin for counting differences
        upstream) and `max_tokens`, or the model's output cap when absent."""
        margin = prompt_tokens + prompt_tokens // 20 + 16
        output = max_tokens if max_tokens is not None else self.prices.max_output_tokens(model)
        return self.prices.worst_case_micros(model, margin, output)
