"""Routing: which upstream targets may serve a requested model, in order."""

from __future__ import annotations

from dataclasses import dataclass

from circuit.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Target:
    provider: Provider
    model: str  # the model name the upstream knows


class Router:
    """With no routes configured, every model goes to the default provider under its own name."""

    def __init__(self, default: Provider) -> None:
        self.default = default
        self.providers = {default.name: default}

    def targets(self, model: str) -> list[Target]:
        return [Target(self.default, model)]
