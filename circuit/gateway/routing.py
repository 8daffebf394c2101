"""Routing: which upstream targets may serve a requested model, in order, and which of them
can take a given request."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from circuit.errors import InvalidRequest
from circuit.providers.base import Provider

T = TypeVar("T")


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


def able_targets(targets: list[Target], native: Callable[[Target], bool],
                 translate: Callable[[], T]) -> tuple[list[Target], T | None]:
    """The targets that can take a door's request, in route order, and its translation.

    A target that speaks the door's API (`native`) takes the request as it is; any other takes
    it translated, so only when `translate()` (called once, and only if such a target is in
    the route) succeeds. A target that cannot take it is dropped before any call: no attempt,
    nothing for its breaker. When no target can, the translation's InvalidRequest (the door's
    400, naming the field) is raised, before admission: the request is recorded `rejected`."""
    natives = [target for target in targets if native(target)]
    if len(natives) == len(targets):
        return targets, None
    try:
        translated = translate()
    except InvalidRequest:
        if not natives:
            raise
        return natives, None
    return takers(targets, lambda target: native(target) or
                  target.provider.takes(translated)), translated


def takers(targets: list[Target], takes: Callable[[Target], object]) -> list[Target]:
    """The targets whose `takes(target)` raises no InvalidRequest, in route order; when none
    does, the first target's refusal is raised (before admission: recorded `rejected`)."""
    able: list[Target] = []
    refusal: InvalidRequest | None = None
    for target in targets:
        try:
            takes(target)
        except InvalidRequest as refused:
            refusal = refusal or refused
        else:
            able.append(target)
    if not able and refusal is not None:
        raise refusal
    return able
