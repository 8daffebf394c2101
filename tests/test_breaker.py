"""The circuit breaker's state machine, on an injected clock (no test sleeps)."""

from __future__ import annotations

import pytest

from circuit.resilience.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def _breaker(clock, **policy) -> tuple[CircuitBreaker, list]:
    changes: list = []
    defaults = dict(window=10, minimum_calls=4, failure_rate=0.5, consecutive_failures=3,
                    cooldown=5, half_open_calls=2)
    breaker = CircuitBreaker("p", BreakerPolicy(**{**defaults, **policy}), clock=clock,
                             wall_clock=clock, listeners=[changes.append])
    return breaker, changes


def test_opens_after_consecutive_failures(clock):
    breaker, changes = _breaker(clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure("upstream_server_error")
    assert breaker.state == OPEN
    assert [(c.from_state, c.to_state) for c in changes] == [(CLOSED, OPEN)]
    assert "3 consecutive failures" in changes[0].reason


def test_opens_when_the_failure_rate_passes_the_threshold_with_enough_calls(clock):
    breaker, _ = _breaker(clock, consecutive_failures=100)
    for outcome in ("ok", "fail", "ok", "fail"):
        breaker.allow()
        breaker.record_success() if outcome == "ok" else breaker.record_failure("x")
    assert breaker.state == OPEN


def test_stays_closed_below_the_minimum_number_of_calls(clock):
    breaker, _ = _breaker(clock, consecutive_failures=100, minimum_calls=10)
    for _ in range(5):
        breaker.record_failure("x")
    assert breaker.state == CLOSED


def test_failures_older_than_the_window_are_forgotten(clock):
    breaker, _ = _breaker(clock, consecutive_failures=100)
    breaker.record_failure("x")
    breaker.record_failure("x")
    clock.now += 11
    breaker.record_success()
    breaker.record_failure("x")
    assert breaker.failures_in_window() == (2, 1)
    assert breaker.state == CLOSED


def test_a_success_resets_the_consecutive_count(clock):
    breaker, _ = _breaker(clock, minimum_calls=100)
    for _ in range(2):
        breaker.record_failure("x")
    breaker.record_success()
    breaker.record_failure("x")
    assert breaker.state == CLOSED


def test_open_refuses_until_the_cooldown_then_lets_limited_trials_through(clock):
    breaker, _ = _breaker(clock)
    breaker.force_open()
    assert not breaker.allow()
    assert breaker.retry_after() == 5
    clock.now += 5
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow(), "only half_open_calls trials at once"


def test_trial_success_closes_the_breaker(clock):
    breaker, changes = _breaker(clock, half_open_calls=1)
    breaker.force_open()
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED
    assert [c.to_state for c in changes] == [OPEN, HALF_OPEN, CLOSED]


def test_trial_failure_opens_it_again_for_another_cooldown(clock):
    breaker, _ = _breaker(clock)
    breaker.force_open()
    clock.now += 5
    breaker.allow()
    breaker.record_failure("upstream_timeout")
    assert breaker.state == OPEN and not breaker.allow()
    assert breaker.retry_after() == 5


def test_an_abandoned_trial_frees_its_slot(clock):
    breaker, _ = _breaker(clock, half_open_calls=1)
    breaker.force_open()
    clock.now += 5
    assert breaker.allow()
    breaker.record_abandoned()
    assert breaker.state == HALF_OPEN and breaker.allow()


def test_reset_closes_and_forgets_the_window(clock):
    breaker, _ = _breaker(clock)
    for _ in range(3):
        breaker.record_failure("x")
    breaker.reset()
    assert breaker.state == CLOSED and breaker.failures_in_window() == (0, 0)


def test_half_open_closes_only_when_every_trial_call_succeeded(clock):
    breaker, changes = _breaker(clock, half_open_calls=2)
    breaker.force_open()
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == HALF_OPEN, "one success of two trials is not a verdict"
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED
    assert "2 trial call(s) succeeded" in changes[-1].reason


def test_half_open_lets_no_more_than_its_trials_through_before_the_verdict(clock):
    breaker, _ = _breaker(clock, half_open_calls=2)
    breaker.force_open()
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.allow()
    assert not breaker.allow(), "a passed trial and one in flight make two"


def test_the_last_failure_is_kept_for_operators(clock):
    breaker, _ = _breaker(clock)
    breaker.record_failure("upstream_auth_failed")
    assert breaker.last_failure == ("upstream_auth_failed", clock.now)
