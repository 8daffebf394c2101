"""Model list prices and output caps, and the cost of a request in integer micro-dollars.

Prices are quoted in USD per million tokens, so $X/M is X micro-dollars per token. To keep
fractional list prices ($0.075/M) exact we hold them as integer pico-dollars per token
(X * 10^6), sum in integers, and round the total up to whole micro-dollars only once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Protocol

from circuit.money import usd
from circuit.wire import Usage

PICO_PER_MICRO = 1_000_000
#: The output cap assumed for a priced model whose cap nobody stated. It bounds what a request
#: without `max_tokens` reserves, and where such a stream is cut, so it errs on the high side.
DEFAULT_MAX_OUTPUT_TOKENS = 32_768
#: `[prices."*"]` in circuit.toml: the price of any model nothing else prices.
FALLBACK_KEY = "*"

_PRICE_FIELDS = ("input", "cached_input", "output", "cache_write")
_OVERRIDE_FIELDS = frozenset((*_PRICE_FIELDS, "max_output_tokens"))
_CACHE_LIMIT = 4096  # model strings come from clients; keep the memo bounded


def _usd_per_million(value: object, name: str) -> Decimal:
    """Parse a price exactly: floats go through str() so 0.1 is 0.1, not 0.1000000000000000055."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    try:
        price = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return price


def _pico_per_token(usd_per_million: Decimal) -> int:
    # Sub-pico precision is meaningless for billing; round up so we never under-charge.
    return int((usd_per_million * PICO_PER_MICRO).to_integral_value(rounding=ROUND_CEILING))


def _ceil_micros(pico: int) -> int:
    return -(-pico // PICO_PER_MICRO)


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """List prices of one model in USD per million tokens, and its output cap.

    `cached_input` and `cache_write` default to `input`. Any number or decimal string is
    accepted; the `*_pico` fields hold the exact integer pico-dollars per token. `tiers` are
    (input tokens, Price) cliffs: past that many input tokens the whole request is priced at
    the tier's rates (Anthropic's and Google's long-context prices).
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    tiers: tuple[tuple[int, Price], ...] = ()
    input_pico: int = field(init=False, repr=False, compare=False)
    cached_input_pico: int = field(init=False, repr=False, compare=False)
    output_pico: int = field(init=False, repr=False, compare=False)
    cache_write_pico: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = {"input": self.input, "output": self.output}
        given["cached_input"] = self.input if self.cached_input is None else self.cached_input
        given["cache_write"] = self.input if self.cache_write is None else self.cache_write
        for name in _PRICE_FIELDS:
            usd = _usd_per_million(given[name], name)
            object.__setattr__(self, name, usd)
            object.__setattr__(self, f"{name}_pico", _pico_per_token(usd))
        cap = self.max_output_tokens
        if isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0:
            raise ValueError(f"max_output_tokens must be a positive integer, got {cap!r}")

    def for_input(self, input_tokens: int) -> Price:
        """The rates that apply to a request of `input_tokens` (the highest tier it passes)."""
        rates = self
        for start, tier in self.tiers:
            if input_tokens > start:
                rates = tier
        return rates


def _p(
    input: str, cached_input: str, output: str, max_out: int, cache_write: str | None = None
) -> Price:
    return Price(
        input=Decimal(input),
        cached_input=Decimal(cached_input),
        output=Decimal(output),
        cache_write=None if cache_write is None else Decimal(cache_write),
        max_output_tokens=max_out,
    )


# List prices, standard tier, USD per 1M tokens: input, cached input, output, max output tokens,
# and for Anthropic the 5-minute cache write (1.25x input). OpenAI has no cache-write charge.
# Sources: openai.com/api/pricing and platform.claude.com/docs/en/about-claude/pricing (2025).
# Not modelled: batch discounts, Anthropic 1-hour cache writes (2x) and >200k-token context tier.
_OPENAI: dict[str, Price] = {
    "gpt-5": _p("1.25", "0.125", "10", 128_000),
    "gpt-5-mini": _p("0.25", "0.025", "2", 128_000),
    "gpt-5-nano": _p("0.05", "0.005", "0.40", 128_000),
    "gpt-5-chat": _p("1.25", "0.125", "10", 16_384),
    "gpt-4.1": _p("2", "0.50", "8", 32_768),
    "gpt-4.1-mini": _p("0.40", "0.10", "1.60", 32_768),
    "gpt-4.1-nano": _p("0.10", "0.025", "0.40", 32_768),
    "gpt-4o": _p("2.50", "1.25", "10", 16_384),
    # The first gpt-4o snapshot kept its launch price; exact match wins over suffix stripping.
    "gpt-4o-2024-05-13": _p("5", "5", "15", 4_096),
    "gpt-4o-mini": _p("0.15", "0.075", "0.60", 16_384),
    "chatgpt-4o-latest": _p("5", "5", "15", 16_384),
    "gpt-4-turbo": _p("10", "10", "30", 4_096),
    "gpt-4": _p("30", "30", "60", 8_192),
    "gpt-3.5-turbo": _p("0.50", "0.50", "1.50", 4_096),
    "o1": _p("15", "7.50", "60", 100_000),
    "o1-mini": _p("1.10", "0.55", "4.40", 65_536),
    "o3": _p("2", "0.50", "8", 100_000),
    "o3-mini": _p("1.10", "0.55", "4.40", 100_000),
    "o4-mini": _p("1.10", "0.275", "4.40", 100_000),
    # Embeddings bill input only (genai-prices' snapshot does not carry them); the cap is
    # moot, as an embeddings request reserves no output.
    "text-embedding-3-small": _p("0.02", "0.02", "0", 8_192),
    "text-embedding-3-large": _p("0.13", "0.13", "0", 8_192),
    "text-embedding-ada-002": _p("0.10", "0.10", "0", 8_192),
    # Legacy completions models (gpt-3.5-turbo-instruct comes from genai-prices).
    "davinci-002": _p("2", "2", "2", 16_384),
    "babbage-002": _p("0.40", "0.40", "0.40", 16_384),
}
_ANTHROPIC: dict[str, Price] = {
    "claude-opus-4-5": _p("5", "0.50", "25", 64_000, cache_write="6.25"),
    "claude-opus-4-1": _p("15", "1.50", "75", 32_000, cache_write="18.75"),
    "claude-opus-4": _p("15", "1.50", "75", 32_000, cache_write="18.75"),
    "claude-sonnet-4-5": _p("3", "0.30", "15", 64_000, cache_write="3.75"),
    "claude-sonnet-4": _p("3", "0.30", "15", 64_000, cache_write="3.75"),
    "claude-3-7-sonnet": _p("3", "0.30", "15", 64_000, cache_write="3.75"),
    "claude-3-5-sonnet": _p("3", "0.30", "15", 8_192, cache_write="3.75"),
    "claude-haiku-4-5": _p("1", "0.10", "5", 64_000, cache_write="1.25"),
    "claude-3-5-haiku": _p("0.80", "0.08", "4", 8_192, cache_write="1"),
    "claude-3-haiku": _p("0.25", "0.03", "1.25", 4_096, cache_write="0.30"),
    "claude-3-opus": _p("15", "1.50", "75", 4_096, cache_write="18.75"),
}
# Other names the providers accept for the same model.
_ALIASES = {
    "gpt-4-turbo-preview": "gpt-4-turbo",
    "gpt-4-1106-preview": "gpt-4-turbo",
    "gpt-4-0125-preview": "gpt-4-turbo",
    "claude-opus-4-0": "claude-opus-4",
    "claude-sonnet-4-0": "claude-sonnet-4",
}
BUILTIN_PRICES: Mapping[str, Price] = {
    **_OPENAI,
    **_ANTHROPIC,
    **{alias: (_OPENAI | _ANTHROPIC)[target] for alias, target in _ALIASES.items()},
}

# A snapshot/version suffix: -2024-08-06, -20250929, -0613, -latest, -v1:0, @20250929 (Vertex).
# Only these are stripped, so a variant ("-mini", "-nano") never falls back to its parent.
_VERSION_SUFFIX = re.compile(r"[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|v\d+(?::\d+)?)$")
# Bedrock model ids: anthropic.claude-... or us.anthropic.claude-...
_BEDROCK_PREFIX = re.compile(r"^(?:[a-z]{2,4}\.)?anthropic\.")


def _candidates(model: str) -> list[str]:
    """Names to try for `model`, most specific first."""
    name = model.strip().lower()
    names = [name]
    bare = _BEDROCK_PREFIX.sub("", name.rsplit("/", 1)[-1])  # openai/gpt-4o -> gpt-4o
    if bare != name:
        names.append(bare)
    while (shorter := _VERSION_SUFFIX.sub("", bare)) != bare:
        names.append(shorter)
        bare = shorter
    return names


class Catalog(Protocol):
    """A source of list prices for models the table does not name (see price_catalog)."""

    def lookup(self, model: str) -> Price | None: ...


class PriceTable:
    """Prices by model name, with lookups tolerant of snapshot suffixes and provider prefixes.

    Looked up in order: the table (built-in prices with circuit.toml's on top), then the
    catalog (genai-prices' snapshot), then the `[prices."*"]` fallback; else unpriced.
    """

    def __init__(self, prices: Mapping[str, Price], catalog: Catalog | None = None) -> None:
        self._prices = {name.strip().lower(): price for name, price in prices.items()}
        self._fallback = self._prices.pop(FALLBACK_KEY, None)
        self._catalog = catalog
        self._memo: dict[str, Price | None] = {}

    @classmethod
    def default(cls, overrides: Mapping[str, Mapping] | None = None, *,
                catalog: Catalog | None | bool = True) -> PriceTable:
        """The built-in table, with `[prices."model"]` entries from circuit.toml on top, and
        genai-prices' catalog behind it (`catalog=False`: the table alone).

        An override replaces the whole price: `input` and `output` are required, `cached_input`
        and `cache_write` default to `input`; `max_output_tokens` defaults to the built-in cap.
        Raises ValueError naming the model and field on bad input.
        """
        prices = dict(BUILTIN_PRICES)
        for model, spec in (overrides or {}).items():
            prices[str(model).strip().lower()] = _override(model, spec, prices)
        if catalog is True:
            from circuit.accounting.price_catalog import GenaiCatalog

            catalog = GenaiCatalog()
        return cls(prices, catalog or None)

    def lookup(self, model: str) -> Price | None:
        """The price of `model`, or None if unpriced."""
        try:
            return self._memo[model]
        except (KeyError, TypeError):
            pass
        if not isinstance(model, str):
            return None
        price = next((self._prices[n] for n in _candidates(model) if n in self._prices), None)
        if price is None and self._catalog is not None:
            price = self._catalog.lookup(model)
        if price is None:
            price = self._fallback
        if len(self._memo) >= _CACHE_LIMIT:
            self._memo.clear()
        self._memo[model] = price
        return price

    def cost_micros(self, model: str, usage: Usage) -> int | None:
        """Cost of `usage` in micro-dollars, rounded up; None if the model is unpriced."""
        price = self.lookup(model)
        if price is None:
            return None
        price = price.for_input(usage.input_tokens)
        cached = max(usage.cached_input_tokens, 0)
        written = max(usage.cache_write_tokens, 0)
        uncached = max(usage.input_tokens - cached - written, 0)
        pico = (
            uncached * price.input_pico
            + cached * price.cached_input_pico
            + written * price.cache_write_pico
            + max(usage.output_tokens, 0) * price.output_pico
        )
        return _ceil_micros(pico)

    def worst_case_micros(
        self, model: str, input_tokens: int, max_output_tokens: int
    ) -> int | None:
        """Upper bound to reserve before a call: all input uncached, every output token used.
        None if the model is unpriced."""
        price = self.lookup(model)
        if price is None:
            return None
        price = price.for_input(input_tokens)
        pico = (
            max(input_tokens, 0) * price.input_pico + max(max_output_tokens, 0) * price.output_pico
        )
        return _ceil_micros(pico)

    def max_output_tokens(self, model: str) -> int:
        """The model's output cap; 4096 for models not in the table."""
        price = self.lookup(model)
        return price.max_output_tokens if price is not None else DEFAULT_MAX_OUTPUT_TOKENS


def _override(model: object, spec: object, known: Mapping[str, Price]) -> Price:
    """Build one override Price, with errors that say where in circuit.toml to look."""
    where = f'[prices."{model}"]'
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be a table of prices, got {spec!r}")
    unknown = sorted(set(map(str, spec)) - _OVERRIDE_FIELDS)
    if unknown:
        allowed = ", ".join(sorted(_OVERRIDE_FIELDS))
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (allowed: {allowed})")
    for required in ("input", "output"):
        if required not in spec:
            raise ValueError(f"{where}: {required} is required")
    builtin = known.get(str(model).strip().lower())
    cap = spec.get(
        "max_output_tokens",
        builtin.max_output_tokens if builtin is not None else DEFAULT_MAX_OUTPUT_TOKENS,
    )
    try:
        return Price(
            input=spec["input"],
            output=spec["output"],
            cached_input=spec.get("cached_input"),
            cache_write=spec.get("cache_write"),
            max_output_tokens=cap,
        )
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def micros_to_usd(m: int) -> float:
    """Micro-dollars as US dollars, for display (kept for callers of this module)."""
    return usd(m)
