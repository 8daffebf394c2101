"""Routing: which upstream targets may serve a requested model, in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from circuit.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Target:
    provider: Provider
    model: str  # the model name the upstream knows
    #: The provider costs nothing (the mock, a local model): a model it serves without a
    #: price may be used by a key with a daily limit.
    free: bool = False

    def __str__(self) -> str:
        return f"{self.provider.name}:{self.model}"


class Router:
    """A routed model gets its targets in order; any other model goes to the default provider
    under its own name."""

    def __init__(self, providers: Mapping[str, Provider], default: str,
                 routes: Mapping[str, list[tuple[str, str]]],
                 free: frozenset[str] = frozenset()) -> None:
        self.providers = dict(providers)
        self.default = self.providers[default]
        self._free_default = default in free
        self._routes = {model: [Target(self.providers[p], m, p in free) for p, m in targets]
                        for model, targets in routes.items()}

    def targets(self, model: str) -> list[Target]:
        return self._routes.get(model) or [Target(self.default, model, self._free_default)]

    @property
    def routed_models(self) -> list[str]:
        return list(self._routes)
