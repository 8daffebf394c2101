"""List prices for the models Circuit's own table does not name, from genai-prices.

genai-prices (pydantic/genai-prices) ships an offline snapshot of some 2,300 models' prices,
kept current by its maintainers, and matches model names the way each provider spells them
(snapshots, aliases, provider prefixes). Circuit's table and circuit.toml stay on top of it:
they are checked first, and say the output cap, which the snapshot does not carry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import TieredPrices

from circuit.accounting.pricing import DEFAULT_MAX_OUTPUT_TOKENS, Price

#: genai-prices' field for each of Price's.
_FIELDS = {"input": "input_mtok", "output": "output_mtok", "cached_input": "cache_read_mtok",
           "cache_write": "cache_write_mtok"}


class GenaiCatalog:
    """Looks a model up in genai-prices' snapshot (a few microseconds; no network)."""

    def __init__(self) -> None:
        self._snapshot = data_snapshot.get_snapshot()

    def lookup(self, model: str) -> Price | None:
        try:
            _, info = self._snapshot.find_provider_model(model, None, None, None)
        except LookupError:
            return None
        return price_from_genai(info.get_prices(datetime.now(UTC)), info.context_window)


def price_from_genai(prices: Any, context_window: int | None) -> Price | None:
    """A Price from a genai-prices ModelPrice; None unless it has per-token input prices
    (models billed per image, per request or per hour are not token-priced here)."""
    rates = {name: getattr(prices, key, None) for name, key in _FIELDS.items()}
    if rates["input"] is None:
        return None
    rates["output"] = rates["output"] if rates["output"] is not None else Decimal(0)
    # Output never passes the context window; a model without one gets the generous default.
    cap = min(context_window, 128_000) if context_window else DEFAULT_MAX_OUTPUT_TOKENS
    starts = sorted({tier.start for rate in rates.values() if isinstance(rate, TieredPrices)
                     for tier in rate.tiers})
    tiers = tuple((start, Price(**_at(rates, start), max_output_tokens=cap))
                  for start in starts)
    return Price(**_at(rates, None), max_output_tokens=cap, tiers=tiers)


def _at(rates: dict[str, Any], start: int | None) -> dict[str, Decimal | None]:
    """Each rate as it stands past `start` input tokens (None: the base rates)."""
    chosen = {}
    for name, rate in rates.items():
        if isinstance(rate, TieredPrices):
            value = rate.base
            for tier in rate.tiers:
                if start is not None and tier.start <= start:
                    value = tier.price
            rate = value
        chosen[name] = rate
    return chosen
