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

    def measure(self, model: str, reported: Usage | None, messages: Any,
                output_text: str) -> Usage:
        """The provider's usage when it gave one, else an exact local count."""
        if reported is not None:
            return reported
        return Usage(input_tokens=self.counter.count_messages(model, messages),
                     output_tokens=self.counter.count_text(model, output_text) if output_text
                     else 0,
                     source="local")

    def cost_micros(self, model: str, usage: Usage) -> int | None:
        """Cost in micro-dollars, rounded up; None when the model has no price."""
        return self.prices.cost_micros(model, usage)
