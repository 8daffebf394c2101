"""Token buckets per key, on an injected clock."""

from __future__ import annotations

import pytest

from circuit.errors import RateLimitExceeded
from circuit.resilience.rate_limit import Limits, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_refuse_the_next_request_with_retry_after_to_the_second():
    clock = FakeClock()
    limiter = RateLimiter(clock)
    for _ in range(3):
        limiter.take("a", Limits(rpm=3, tpm=None), 0)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.take("a", Limits(rpm=3, tpm=None), 0)
    assert caught.value.headers["retry-after"] == "20"  # one request every 20 s
    clock.now += 19.5
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.take("a", Limits(rpm=3, tpm=None), 0)
    assert caught.value.headers["retry-after"] == "1"
    clock.now += 0.5
    limiter.take("a", Limits(rpm=3, tpm=None), 0)


def test_tokens_per_minute_count_what_the_request_borrows():
    limiter = RateLimiter(FakeClock())
    limiter.take("a", Limits(rpm=None, tpm=1000), 900)
    with pytest.raises(RateLimitExceeded, match="1000 tokens per minute"):
        limiter.take("a", Limits(rpm=None, tpm=1000), 200)


def test_settling_returns_tokens_borrowed_but_not_used():
    limiter = RateLimiter(FakeClock())
    limiter.take("a", Limits(rpm=None, tpm=1000), 900)
    limiter.settle("a", Limits(rpm=None, tpm=1000), borrowed=900, used=100)
    limiter.take("a", Limits(rpm=None, tpm=1000), 800)


def test_a_request_larger_than_the_whole_minute_is_refused():
    with pytest.raises(RateLimitExceeded, match="more than the key's limit"):
        RateLimiter(FakeClock()).take("a", Limits(rpm=None, tpm=100), 101)


def test_each_key_has_its_own_buckets():
    limiter = RateLimiter(FakeClock())
    limiter.take("noisy", Limits(rpm=1, tpm=None), 0)
    with pytest.raises(RateLimitExceeded):
        limiter.take("noisy", Limits(rpm=1, tpm=None), 0)
    limiter.take("quiet", Limits(rpm=1, tpm=None), 0)


def test_a_changed_limit_applies_to_the_next_request():
    limiter = RateLimiter(FakeClock())
    limiter.take("a", Limits(rpm=1, tpm=None), 0)
    limiter.take("a", Limits(rpm=5, tpm=None), 0)
