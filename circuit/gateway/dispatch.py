"""Dispatcher: a call tried on each target in turn — breaker, retries with backoff, fallback.

For each target: skip it when its breaker is open; otherwise call, and retry a retryable failure
with backoff until the target's attempts or the request's deadline run out, or its client hangs
up; then fall back to the next target. A failure the client caused (an upstream 400, 404, …)
ends it at once. If no target could even be tried (every breaker open), the answer is the
structured 503; otherwise the last failure's. Every attempt, and why it failed, is written to the trace for the request record.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from circuit.errors import CircuitError, ServiceUnavailable, UpstreamError, UpstreamRejected
from circuit.gateway.client_watch import ClientWatch
from circuit.gateway.routing import Target
from circuit.resilience.breaker import CircuitBreaker, Permit
from circuit.resilience.retry import RetryPolicy, parse_retry_after

T = TypeVar("T")


@dataclass(slots=True)
class DispatchTrace:
    """What happened on the way to an answer: attempts made, and each failure; and the
    request's client watch, which ends the retries and fallbacks of a request nobody awaits."""

    attempts: int = 0
    failures: list[dict] = field(default_factory=list)
    watch: ClientWatch | None = None

    def abandoned(self) -> bool:
        """The client hung up: no further attempt is made for it (each could be billed)."""
        return self.watch is not None and self.watch.gone

    def calling(self) -> bool:
        """Whether an upstream call is under way: more calls made than failed (a backoff
        wait, or a target skipped for its open breaker, is not one)."""
        failed = sum(1 for failure in self.failures if failure["error"] != "breaker_open")
        return self.attempts > failed

    async def pause(self, wait: Awaitable[None]) -> None:
        """Await a backoff `wait`, cut short when the client hangs up meanwhile."""
        if self.watch is None:
            await wait
        else:
            await self.watch.pause(wait)

    def failed(self, target: Target, code: str, status: int | None) -> None:
        self.failures.append({"provider": target.provider.name, "model": target.model,
                              "error": code, "status": status})


class Dispatcher:
    def __init__(self, breakers: Mapping[str, CircuitBreaker],
                 policies: Mapping[str, RetryPolicy], *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.perf_counter,
                 rand: Callable[[], float] = random.random) -> None:
        self._breakers = breakers
        self._policies = policies
        self._sleep = sleep
        self._clock = clock
        self._rand = rand

    async def call(self, targets: list[Target], attempt: Callable[[Target], Awaitable[T]],
                   trace: DispatchTrace, started: float) -> tuple[Target, T, Permit]:
        """The first target's answer that succeeds, with the permit its breaker gave the
        call: the answer's outcome (success, failure, abandoned) is told to it."""
        last_error: CircuitError | None = None
        for target in targets:
            breaker = self._breakers[target.provider.name]
            policy = self._policies[target.provider.name]
            if self._clock() - started > policy.deadline or trace.abandoned():
                break
            for number in range(1, policy.max_attempts + 1):
                permit = await breaker.claim()
                if permit is None:
                    trace.failed(target, "breaker_open", 503)
                    break
                trace.attempts += 1
                try:
                    result = await attempt(target)
                except UpstreamError as error:
                    trace.failed(target, error.code, error.status)
                    if error.breaker_failure:
                        permit.failure(error.code)
                    else:
                        permit.success()  # it answered; the request was at fault
                    last_error = error
                    if isinstance(error, UpstreamRejected) and not error.retryable:
                        raise  # the client's own error: no other target will like it more
                    if not error.retryable or number == policy.max_attempts or \
                            trace.abandoned():
                        break
                    delay = policy.delay(number, parse_retry_after(error.headers.get(
                        "retry-after")), self._rand)
                    if self._clock() + delay - started > policy.deadline:
                        break
                    await trace.pause(self._sleep(delay))
                    if trace.abandoned():
                        break  # the client hung up during the wait: no call made for nobody
                    continue
                except BaseException:
                    permit.abandoned()
                    raise
                return target, result, permit
        if last_error is not None:
            raise last_error
        breakers = [self._breakers[t.provider.name] for t in targets]
        causes = dict.fromkeys(f"{b.provider}={b.last_failure[0]}" for b in breakers
                               if b.last_failure is not None)
        raise ServiceUnavailable(min(b.retry_after() for b in breakers),
                                 ", ".join(causes) or None)
