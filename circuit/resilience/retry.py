"""Retry policy: exponential backoff with full jitter, a cap, a number of attempts and a deadline.

Only failures that can succeed on a second try are retried (the error says so: connection
errors, timeouts, 429, 5xx), and only before the first byte of the answer reached the client.
An upstream's `Retry-After` is honoured when the deadline leaves room for it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3  # per target, the first call included
    backoff_initial: float = 0.25  # seconds; the cap of the first delay
    backoff_max: float = 8.0  # seconds; no delay is longer
    deadline: float = 60.0  # seconds from the request's start; no attempt starts after it

    def delay(self, retry: int, retry_after: float | None = None,
              rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (retry - 1))
        delay = rand() * ceiling  # full jitter: uniform in [0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None when absent or a date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def retry_after_passed(value: str | None) -> dict[str, str]:
    """The Retry-After an upstream sent, as the header to pass on and to wait by: whole
    seconds, or none when it is not a number of seconds (`abc` is not sent on as it came)."""
    seconds = parse_retry_after(value)
    if seconds is None or not math.isfinite(seconds):
        return {}
    return {"retry-after": str(math.ceil(seconds))}
