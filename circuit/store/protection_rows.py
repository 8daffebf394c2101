"""Rows of the protection tables: breaker events, states and operator commands."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BreakerEventRow:
    provider: str
    holder: str  # host:pid of the gateway process
    from_state: str
    to_state: str
    reason: str
    at: str  # ISO-8601 UTC


@dataclass(frozen=True, slots=True)
class BreakerStateRow:
    provider: str
    holder: str
    state: str
    opened_at: str | None
    probe_at: str | None
    calls_in_window: int
    failures_in_window: int
    updated_at: str


@dataclass(frozen=True, slots=True)
class BreakerCommand:
    id: int
    provider: str
    action: str  # "reset" | "open"
    created_at: str
