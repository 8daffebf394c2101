"""The one check of a configuration that `circuit serve`, `circuit config check` and every
gateway process run, so a configuration that passes `config check` also starts.

`load_settings` checks each setting on its own; this checks what they make together: the
`[prices]` table, every provider (`[providers.*]` and the implicit ones, with the key each
needs), and every route's targets.
"""

from __future__ import annotations

from dataclasses import dataclass

from circuit.accounting.pricing import PriceTable
from circuit.config import ConfigError, Settings
from circuit.providers.registry import ProviderSpec, provider_specs, route_table


@dataclass(frozen=True)
class GatewayPlan:
    """What a valid configuration builds: prices, providers by name, routes by model."""

    prices: PriceTable
    specs: dict[str, ProviderSpec]
    routes: dict[str, list[tuple[str, str]]]


def validate(settings: Settings) -> GatewayPlan:
    """The gateway's prices, providers and routes; ConfigError (one line) names what is wrong."""
    try:
        prices = PriceTable.default(settings.prices)
    except ValueError as exc:
        raise ConfigError(f"[prices] {exc}") from None
    specs = provider_specs(settings)
    return GatewayPlan(prices, specs, route_table(settings, specs))
