"""Circuit breaker, one per provider: closed → open → half-open → closed.

Closed: calls flow; each outcome lands in a sliding window of one-second buckets. The breaker
opens when the failure rate over the window reaches `failure_rate` with at least `minimum_calls`
in it, or after `consecutive_failures` failures in a row. Open: every call is refused at once,
for `cooldown` seconds. Half-open: up to `half_open_calls` trial calls go through; if they all
succeed the breaker closes, any failure opens it again. The clock is injected, so tests never
sleep; listeners hear every state change.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    window: float = 30.0  # seconds of outcomes the failure rate looks at
    minimum_calls: int = 10
    failure_rate: float = 0.5
    consecutive_failures: int = 5
    cooldown: float = 15.0
    half_open_calls: int = 2


@dataclass(frozen=True)
class StateChange:
    provider: str
    from_state: str
    to_state: str
    reason: str
    at: float  # wall clock, seconds since the epoch


Listener = Callable[[StateChange], None]


@dataclass
class _Window:
    """Outcomes per whole second over the last `span` seconds."""

    span: float
    buckets: deque = field(default_factory=deque)  # [second, calls, failures]

    def add(self, now: float, failed: bool) -> None:
        second = int(now)
        if self.buckets and self.buckets[-1][0] == second:
            bucket = self.buckets[-1]
        else:
            bucket = [second, 0, 0]
            self.buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        self._trim(now)

    def counts(self, now: float) -> tuple[int, int]:
        self._trim(now)
        return (sum(b[1] for b in self.buckets), sum(b[2] for b in self.buckets))

    def _trim(self, now: float) -> None:
        oldest = now - self.span
        while self.buckets and self.buckets[0][0] + 1 <= oldest:
            self.buckets.popleft()

    def clear(self) -> None:
        self.buckets.clear()


class _State:
    name: str

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def allow(self, now: float) -> bool:
        raise NotImplementedError

    def on_success(self, now: float) -> None:
        pass

    def on_failure(self, now: float, reason: str) -> None:
        pass

    def on_abandoned(self) -> None:
        pass


class _Closed(_State):
    name = CLOSED

    def allow(self, now: float) -> bool:
        return True

    def on_success(self, now: float) -> None:
        self.breaker._consecutive = 0
        self.breaker._window.add(now, False)

    def on_failure(self, now: float, reason: str) -> None:
        b = self.breaker
        b._consecutive += 1
        b._window.add(now, True)
        calls, failures = b._window.counts(now)
        policy = b.policy
        if b._consecutive >= policy.consecutive_failures:
            b._move(_Open, f"{b._consecutive} consecutive failures, last: {reason}", now)
        elif calls >= policy.minimum_calls and failures / calls >= policy.failure_rate:
            b._move(_Open, f"failure rate {failures}/{calls} over {policy.window:g}s, "
                           f"last: {reason}", now)


class _Open(_State):
    name = OPEN

    def allow(self, now: float) -> bool:
        if now >= self.breaker.probe_at:
            self.breaker._move(_HalfOpen, "cool-down over", now)
            return self.breaker._state.allow(now)
        return False


class _HalfOpen(_State):
    name = HALF_OPEN

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.in_flight = 0
        self.succeeded = 0

    def allow(self, now: float) -> bool:
        # Trials in flight and trials passed together: no more than half_open_calls calls
        # before the verdict.
        if self.in_flight + self.succeeded >= self.breaker.policy.half_open_calls:
            return False
        self.in_flight += 1
        return True

    def on_success(self, now: float) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.succeeded += 1
        # Every trial call must succeed: one success alone proves little of a provider
        # that was failing (trial slots freed by abandoned calls are let through again).
        if self.succeeded >= self.breaker.policy.half_open_calls:
            self.breaker._move(_Closed, f"{self.succeeded} trial call(s) succeeded", now)

    def on_failure(self, now: float, reason: str) -> None:
        self.breaker._move(_Open, f"trial call failed: {reason}", now)

    def on_abandoned(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)


class Permit:
    """A call the breaker let through. Its outcome is told once: success, failure or
    abandoned (the call ended for a reason that says nothing of the provider); later
    outcomes are ignored, so no caller owes the breaker a call and none tells it twice."""

    __slots__ = ("_breaker", "told")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self.told = False

    def _tell(self) -> bool:
        if self.told:
            return False
        self.told = True
        return True

    def success(self) -> None:
        if self._tell():
            self._breaker.record_success()

    def failure(self, reason: str) -> None:
        if self._tell():
            self._breaker.record_failure(reason)

    def abandoned(self) -> None:
        if self._tell():
            self._breaker.record_abandoned()


class CircuitBreaker:
    """One provider's breaker. `permit()` before a call: a Permit to tell the call's outcome
    to, or None when the breaker refuses the call."""

    def __init__(self, provider: str, policy: BreakerPolicy | None = None,
                 clock: Clock = time.monotonic, wall_clock: Clock = time.time,
                 listeners: list[Listener] | None = None) -> None:
        self.provider = provider
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._wall = wall_clock
        self.listeners = list(listeners or [])
        self._window = _Window(self.policy.window)
        self._consecutive = 0
        self._state: _State = _Closed(self)
        self.opened_at: float | None = None  # wall clock
        self.probe_at = 0.0  # monotonic
        #: (code, wall-clock time) of the last failure: why a breaker opened, for operators.
        self.last_failure: tuple[str, float] | None = None

    @property
    def state(self) -> str:
        return self._state.name

    def allow(self) -> bool:
        """Whether a call may go to the provider now (a half-open trial slot is taken); the
        caller then owes exactly one record_* call. Prefer `permit()`."""
        return self._state.allow(self._clock())

    def permit(self) -> Permit | None:
        """A permit for one call now, or None when the breaker refuses it."""
        return Permit(self) if self._state.allow(self._clock()) else None

    async def claim(self) -> Permit | None:
        """`permit()`, for callers that may wait on a breaker the fleet shares (see
        shared_breaker.py): this one never waits."""
        return self.permit()

    def retry_after(self) -> int:
        """Whole seconds until the breaker will let a trial call through."""
        return max(1, math.ceil(self.probe_at - self._clock()))

    def record_success(self) -> None:
        self._state.on_success(self._clock())

    def record_failure(self, reason: str) -> None:
        self.last_failure = (reason, self._wall())
        self._state.on_failure(self._clock(), reason)

    def record_abandoned(self) -> None:
        """The call ended for a reason that says nothing of the provider (client left)."""
        self._state.on_abandoned()

    def failures_in_window(self) -> tuple[int, int]:
        """(calls, failures) in the sliding window."""
        return self._window.counts(self._clock())

    def force_open(self, reason: str = "opened by operator") -> None:
        self._move(_Open, reason, self._clock())

    def reset(self, reason: str = "reset by operator") -> None:
        self._move(_Closed, reason, self._clock())

    def seconds_to_probe(self) -> float | None:
        return max(0.0, self.probe_at - self._clock()) if self.state == OPEN else None

    def _move(self, to: type[_State], reason: str, now: float) -> None:
        before = self._state.name
        self._state = to(self)
        if to is _Open:
            self.opened_at = self._wall()
            self.probe_at = now + self.policy.cooldown
        elif to is _Closed:
            self.opened_at = None
            self._consecutive = 0
            self._window.clear()
        if before == to.name:
            return
        change = StateChange(self.provider, before, to.name, reason, self._wall())
        for listener in self.listeners:
            listener(change)
