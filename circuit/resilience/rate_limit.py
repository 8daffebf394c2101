"""Per-key rate limits: requests and tokens per minute, as token buckets in memory.

This process's buckets; with CIRCUIT_REDIS_URL the fleet shares them instead
(`shared_limits.py`), and falls back to these when Redis is unreachable.

Tokens are borrowed before the call (the prompt plus `max_tokens`) and the difference to what was
really used is settled after it, so a key that under-declares pays for it on its next request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from circuit.errors import RateLimitExceeded

Clock = Callable[[], float]


class TokenBucket:
    """`capacity` tokens, refilled continuously at `capacity` per minute."""

    __slots__ = ("capacity", "_rate", "_level", "_at", "_clock")

    def __init__(self, capacity: int, clock: Clock) -> None:
        self.capacity = capacity
        self._rate = capacity / 60.0
        self._level = float(capacity)
        self._clock = clock
        self._at = clock()

    def _refill(self) -> float:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._at) * self._rate)
        self._at = now
        return self._level

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` could be taken (0: now)."""
        missing = amount - self._refill()
        return 0.0 if missing <= 0 else missing / self._rate

    def take(self, amount: float) -> None:
        """Take `amount` (the level may go below zero: a debt repaid by refill)."""
        self._refill()
        self._level -= amount

    def spend(self, amount: float) -> None:
        """Take `amount` right after `wait_for` refilled the bucket (no second refill)."""
        self._level -= amount


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None
    tpm: int | None


def check_fits(limits: Limits, tokens: int) -> None:
    """Refuse a request that needs more tokens than a whole minute holds: no wait would do."""
    if limits.tpm is not None and tokens > limits.tpm:
        raise RateLimitExceeded(
            f"This request needs ~{tokens} tokens, more than the key's limit of "
            f"{limits.tpm} tokens per minute", headers={"retry-after": "60"})


def refusal(wait: float, what: str) -> RateLimitExceeded:
    """The 429 for a bucket that can serve again in `wait` seconds (`what`: its limit)."""
    seconds = max(1, math.ceil(wait))
    return RateLimitExceeded(f"Rate limit of {what} reached for this key; retry after {seconds}s",
                             headers={"retry-after": str(seconds)})


def limit_text(kind: str, limits: Limits) -> str:
    return f"{limits.rpm} requests per minute" if kind == "rpm" \
        else f"{limits.tpm} tokens per minute"


class Limiter(Protocol):
    """What the gateway asks of a rate limiter: this process's (`RateLimiter`) or the fleet's
    (`circuit.resilience.shared_limits.SharedRateLimiter`)."""

    async def admit(self, key: str, limits: Limits, tokens: int) -> None:
        """Take one request and `tokens`, or raise RateLimitExceeded (or LimitsUnavailable)."""

    def settle(self, key: str, limits: Limits, borrowed: int, used: int) -> None:
        """Charge (or give back) the difference between tokens borrowed and used."""


class RateLimiter:
    """Buckets per key in this process; limits come with each call so a change applies to the
    next request."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str, int], TokenBucket] = {}
        self._outstanding: dict[str, int] = {}  # tokens borrowed and not yet settled, per key

    def outstanding(self, key: str) -> int:
        """Tokens this key's requests in flight have borrowed (0 once all have settled)."""
        return self._outstanding.get(key, 0)

    def _bucket(self, key: str, kind: str, capacity: int) -> TokenBucket:
        # A changed limit gets a fresh, full bucket: keyed by its capacity too.
        bucket = self._buckets.get((key, kind, capacity))
        if bucket is None:
            for stale in [k for k in self._buckets if k[0] == key and k[1] == kind]:
                del self._buckets[stale]
            bucket = self._buckets[(key, kind, capacity)] = TokenBucket(capacity, self._clock)
        return bucket

    async def admit(self, key: str, limits: Limits, tokens: int) -> None:
        self.take(key, limits, tokens)

    def take(self, key: str, limits: Limits, tokens: int) -> None:
        """Take one request and `tokens` from the key's buckets, or raise RateLimitExceeded."""
        if limits.rpm is None and limits.tpm is None:
            return
        check_fits(limits, tokens)
        requests = self._bucket(key, "rpm", limits.rpm) if limits.rpm else None
        budget = self._bucket(key, "tpm", limits.tpm) if limits.tpm else None
        waits = []
        if requests is not None and (wait := requests.wait_for(1)) > 0:
            waits.append((wait, limit_text("rpm", limits)))
        if budget is not None and (wait := budget.wait_for(tokens)) > 0:
            waits.append((wait, limit_text("tpm", limits)))
        if waits:
            raise refusal(*max(waits))
        if requests is not None:
            requests.spend(1)
        if budget is not None:
            budget.spend(tokens)
            self._outstanding[key] = self.outstanding(key) + tokens

    def settle(self, key: str, limits: Limits, borrowed: int, used: int) -> None:
        """Charge (or give back) the difference between tokens borrowed and used."""
        if not limits.tpm:
            return
        self._outstanding[key] = self.outstanding(key) - borrowed
        if used != borrowed:
            self._bucket(key, "tpm", limits.tpm).take(used - borrowed)
