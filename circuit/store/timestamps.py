"""The one timestamp format every table uses: ISO-8601 UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """Now, e.g. 2026-11-26T03:44:56.123Z (sorts as text, readable in any SQL shell)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_text(moment: float) -> str:
    """A Unix time in the same format."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
