"""Rows of the protection tables: breaker events, states and operator commands."""

from __future__ import annotations

from dataclasses import dataclass, fields


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
    #: The last failure's code and when it happened ("upstream_auth_failed at 2026-…"), so an
    #: operator sees why a breaker opened (bad credentials, a 5xx storm, …).
    last_failure: str | None = None


BREAKER_STATE_COLUMNS = tuple(f.name for f in fields(BreakerStateRow))


def upsert_breaker_state(placeholder: str) -> str:
    """The statement that inserts or replaces a breaker_state row, in both dialects."""
    columns = ", ".join(BREAKER_STATE_COLUMNS)
    values = ", ".join(placeholder for _ in BREAKER_STATE_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in BREAKER_STATE_COLUMNS
                        if c not in ("provider", "holder"))
    return (f"INSERT INTO breaker_state ({columns}) VALUES ({values}) "
            f"ON CONFLICT (provider, holder) DO UPDATE SET {updates}")


@dataclass(frozen=True, slots=True)
class BreakerCommand:
    id: int
    provider: str
    action: str  # "reset" | "open"
    created_at: str
