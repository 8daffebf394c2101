"""PriceTable: list prices, exact integer micro-dollar costs, and circuit.toml overrides."""

from __future__ import annotations

from decimal import Decimal

import pytest

from circuit.accounting.pricing import Price, PriceTable, micros_to_usd
from circuit.money import usd_text
from circuit.wire import Usage


@pytest.fixture(scope="module")
def table() -> PriceTable:
    """Circuit's own table, without genai-prices' catalog behind it."""
    return PriceTable.default(catalog=False)


@pytest.fixture(scope="module")
def full_table() -> PriceTable:
    return PriceTable.default()


REQUIRED_MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4-turbo",
    "gpt-3.5-turbo",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "claude-opus-4-1",
    "claude-opus-4",
    "claude-opus-4-5",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-3-7-sonnet",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
]


@pytest.mark.parametrize("model", REQUIRED_MODELS)
def test_current_models_are_priced(table, model):
    assert table.lookup(model) is not None


@pytest.mark.parametrize(
    ("model", "input", "cached_input", "output"),
    [
        ("gpt-4o", "2.50", "1.25", "10"),
        ("gpt-4o-mini", "0.15", "0.075", "0.60"),
        ("gpt-4.1", "2", "0.50", "8"),
        ("o4-mini", "1.10", "0.275", "4.40"),
        ("gpt-5-nano", "0.05", "0.005", "0.40"),
        ("claude-sonnet-4-5", "3", "0.30", "15"),
        ("claude-opus-4-5", "5", "0.50", "25"),
        ("claude-3-5-haiku", "0.80", "0.08", "4"),
    ],
)
def test_list_prices_per_million_tokens(table, model, input, cached_input, output):
    price = table.lookup(model)
    assert (price.input, price.cached_input, price.output) == tuple(
        map(Decimal, (input, cached_input, output))
    )


@pytest.mark.parametrize("model", [m for m in REQUIRED_MODELS if m.startswith("claude-")])
def test_anthropic_cache_writes_cost_one_and_a_quarter_times_input(table, model):
    price = table.lookup(model)
    assert price.cache_write == price.input * Decimal("1.25")


def test_openai_has_no_cache_write_surcharge(table):
    price = table.lookup("gpt-4o")
    assert price.cache_write == price.input


def test_cost_is_exact_in_micro_dollars(table):
    # 800 uncached * $0.15/M + 200 cached * $0.075/M + 500 out * $0.60/M
    # = 120 + 15 + 300 micro-dollars.
    usage = Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500)
    assert table.cost_micros("gpt-4o-mini", usage) == 435


def test_a_million_tokens_costs_the_list_price(table):
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert table.cost_micros("gpt-4o", usage) == 12_500_000  # $2.50 + $10


def test_cached_tokens_are_billed_at_the_cached_rate(table):
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000)
    assert table.cost_micros("gpt-4o", usage) == 1_250_000


def test_anthropic_cache_reads_and_writes_are_billed_separately(table):
    # 1000 uncached * $3 + 1000 read * $0.30 + 8000 written * $3.75 + 1000 out * $15 (per M)
    usage = Usage(
        input_tokens=10_000,
        cached_input_tokens=1_000,
        cache_write_tokens=8_000,
        output_tokens=1_000,
    )
    assert table.cost_micros("claude-sonnet-4-5", usage) == 3_000 + 300 + 30_000 + 15_000


def test_cost_rounds_up_to_the_next_micro_dollar(table):
    # One gpt-4o-mini input token is 0.15 micro-dollars.
    assert table.cost_micros("gpt-4o-mini", Usage(input_tokens=1)) == 1
    # 7 tokens at $0.15/M = 1.05 micro-dollars.
    assert table.cost_micros("gpt-4o-mini", Usage(input_tokens=7)) == 2


def test_rounding_happens_once_on_the_total(table):
    # 2 uncached * $0.05/M + 2 cached * $0.005/M = 0.11 micro-dollars: rounding each line
    # separately would charge 2.
    usage = Usage(input_tokens=4, cached_input_tokens=2)
    assert table.cost_micros("gpt-5-nano", usage) == 1


def test_empty_usage_costs_nothing(table):
    assert table.cost_micros("gpt-4o", Usage()) == 0


def test_uncached_input_never_goes_negative(table):
    # A provider reporting more cached than total input must not earn a refund.
    usage = Usage(input_tokens=100, cached_input_tokens=1_000_000)
    assert table.cost_micros("gpt-4o", usage) == 1_250_000


def test_unpriced_model_has_no_cost(table):
    assert table.lookup("my-local-llama") is None
    assert table.cost_micros("my-local-llama", Usage(input_tokens=10)) is None
    assert table.worst_case_micros("my-local-llama", 10, 10) is None


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-opus-4-0", "claude-opus-4"),
    ],
)
def test_snapshot_and_version_suffixes_price_as_the_base_model(table, model, priced_as):
    assert table.lookup(model) == table.lookup(priced_as)


@pytest.mark.parametrize("model", ["openai/gpt-4o", "anthropic/claude-haiku-4-5", "OpenAI/GPT-4o"])
def test_provider_prefix_is_ignored(table, model):
    assert table.lookup(model) == table.lookup(model.split("/")[1].lower())


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini-2024-07-18"]
)
def test_gpt_4o_mini_is_never_priced_as_gpt_4o(table, model):
    assert table.lookup(model).input == Decimal("0.15")


def test_unknown_variant_is_unpriced_rather_than_priced_as_its_parent(table):
    # Only version suffixes are stripped; "-transcribe" is a different product.
    assert table.lookup("gpt-4o-transcribe") is None


def test_exact_snapshot_price_wins_over_suffix_stripping(table):
    # The first gpt-4o snapshot kept its $5 / $15 launch price.
    assert table.lookup("gpt-4o-2024-05-13").input == Decimal("5")


def test_non_string_model_is_unpriced(table):
    assert table.lookup(None) is None
    assert table.lookup(["gpt-4o"]) is None


def test_worst_case_is_full_input_price_plus_every_output_token(table):
    # 1000 * $2.50/M + 16384 * $10/M = 2500 + 163840 micro-dollars.
    assert table.worst_case_micros("gpt-4o", 1000, 16_384) == 166_340


def test_worst_case_rounds_up(table):
    assert table.worst_case_micros("gpt-4o-mini", 1, 0) == 1


@pytest.mark.parametrize(
    ("model", "cap"),
    [
        ("gpt-4o", 16_384),
        ("gpt-4o-mini-2024-07-18", 16_384),
        ("gpt-4.1-mini", 32_768),
        ("o3", 100_000),
        ("o4-mini", 100_000),
        ("gpt-5-mini", 128_000),
        ("claude-sonnet-4-5-20250929", 64_000),
        ("claude-sonnet-4", 64_000),
        ("claude-opus-4-1", 32_000),
        ("claude-haiku-4-5", 64_000),
        ("claude-3-5-haiku", 8_192),
        ("never-heard-of-it", 32_768),
    ],
)
def test_max_output_tokens(table, model, cap):
    assert table.max_output_tokens(model) == cap


def test_prices_are_parsed_exactly_into_pico_dollars_per_token():
    price = Price(input=0.1, cached_input="0.075", output=Decimal("0.3"))
    assert (price.input_pico, price.cached_input_pico, price.output_pico) == (
        100_000,
        75_000,
        300_000,
    )


def test_missing_cached_input_and_cache_write_default_to_input():
    price = Price(input=2, output=8)
    assert price.cached_input == price.cache_write == Decimal(2)


def test_override_adds_a_model():
    table = PriceTable.default({"my-model": {"input": 1, "output": 2}})
    assert table.cost_micros("my-model", Usage(input_tokens=1000, output_tokens=1000)) == 3_000


def test_override_replaces_a_builtin_price():
    table = PriceTable.default({"gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1}})
    assert table.lookup("gpt-4o-2024-08-06").cached_input == Decimal(1)


def test_override_without_cached_or_write_prices_uses_input():
    table = PriceTable.default({"gpt-4o": {"input": 2.5, "output": 10}})
    price = table.lookup("gpt-4o")
    assert price.cached_input == price.cache_write == Decimal("2.5")


def test_override_keeps_the_builtin_output_cap_unless_given():
    table = PriceTable.default(
        {
            "gpt-4o": {"input": 3, "output": 12},
            "o3": {"input": 2, "output": 8, "max_output_tokens": 50_000},
        }
    )
    assert table.max_output_tokens("gpt-4o") == 16_384
    assert table.max_output_tokens("o3") == 50_000


def test_overrides_do_not_leak_into_other_tables():
    PriceTable.default({"gpt-4o": {"input": 99, "output": 99}})
    assert PriceTable.default().lookup("gpt-4o").input == Decimal("2.50")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"input": -1, "output": 10}, "input"),
        ({"input": 1, "output": "ten"}, "output"),
        ({"input": 1, "output": 10, "cached_input": True}, "cached_input"),
        ({"input": 1, "output": 10, "cache_write": float("nan")}, "cache_write"),
        ({"input": float("inf"), "output": 10}, "input"),
        ({"input": 1, "output": [10]}, "output"),
        ({"input": 1}, "output"),
        ({"output": 1}, "input"),
        ({"input": 1, "output": 10, "cached": 0.5}, "cached"),
        ({"input": 1, "output": 10, "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": 1, "output": 10, "max_output_tokens": 1.5}, "max_output_tokens"),
    ],
)
def test_bad_override_names_the_model_and_field(spec, field):
    with pytest.raises(ValueError, match=r"my-model") as raised:
        PriceTable.default({"my-model": spec})
    assert field in str(raised.value)


def test_override_that_is_not_a_table_is_rejected():
    with pytest.raises(ValueError, match="my-model"):
        PriceTable.default({"my-model": 2.5})


def test_micros_to_usd():
    assert micros_to_usd(1_250_000) == 1.25


# -- the catalog behind the table (genai-prices) and the fallback price ----------------------

@pytest.mark.parametrize(("model", "input_price", "output_price"), [
    ("o1-pro", "150", "600"),
    ("gpt-4.5-preview", "75", "150"),
])
def test_models_the_table_lacks_are_priced_from_genai_prices(full_table, model, input_price,
                                                               output_price):
    price = full_table.lookup(model)
    assert (price.input, price.output) == (Decimal(input_price), Decimal(output_price))


def test_the_table_wins_over_the_catalog(full_table):
    assert full_table.lookup("gpt-4o").max_output_tokens == 16_384


def test_an_override_wins_over_the_catalog():
    table = PriceTable.default({"o1-pro": {"input": 1, "output": 2}})
    assert table.lookup("o1-pro").input == Decimal(1)


def test_a_fine_tune_is_unpriced_until_configured(full_table):
    assert full_table.lookup("ft:gpt-4o-mini:acme::abc123") is None


def test_long_context_tiers_price_the_whole_request_at_the_tier(full_table):
    # gemini-2.5-pro: $1.25/M input up to 200k tokens, $2.50/M for all of a longer prompt.
    assert full_table.cost_micros("gemini-2.5-pro", Usage(input_tokens=100_000)) == 125_000
    assert full_table.cost_micros("gemini-2.5-pro", Usage(input_tokens=300_000)) == 750_000
    assert full_table.worst_case_micros("gemini-2.5-pro", 300_000, 0) == 750_000


def test_the_star_price_prices_every_model_nothing_else_does():
    table = PriceTable.default({"*": {"input": 1, "output": 2}}, catalog=False)
    assert table.cost_micros("my-local-llama", Usage(input_tokens=1000)) == 1_000
    assert table.lookup("gpt-4o").input == Decimal("2.50")


def test_a_catalog_model_without_a_known_cap_gets_the_generous_default(full_table):
    assert full_table.max_output_tokens("gpt-4.5-preview") == 32_768


@pytest.mark.parametrize(("micros", "shown"), [
    (0, "$0.00"), (11, "$0.000011"), (2_000, "$0.002"), (10_000, "$0.01"),
    (5_000_000, "$5.00"), (1_234_567, "$1.23"), (1_250_000_000, "$1,250.00"),
])
def test_amounts_for_people_keep_every_micro_dollar_below_a_dollar(micros, shown):
    assert usd_text(micros) == shown


@pytest.mark.parametrize("micros", [10**18, 10**300, -(10**300)])
def test_an_amount_past_a_trillion_dollars_is_named_by_that_bound_not_its_digits(micros):
    assert usd_text(micros).endswith("over $1,000,000,000,000")
