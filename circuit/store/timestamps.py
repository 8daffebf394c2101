"""The one timestamp format every table uses: ISO-8601 UTC with milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

# (second, its text): formatting the date is most of the cost, and it changes once a second.
# One tuple, replaced whole, so threads never see a second paired with another's text.
_cache: tuple[int, str] = (-1, "")


def utc_text(moment: float) -> str:
    """A Unix time as text, e.g. 2026-11-26T03:44:56.123Z (sorts as text, readable anywhere)."""
    global _cache
    second = int(moment)
    cached_second, prefix = _cache
    if second != cached_second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _cache = (second, prefix)
    return f"{prefix}.{int((moment - second) * 1000):03d}Z"


def utc_now() -> str:
    """Now, in the same format."""
    return utc_text(time.time())
