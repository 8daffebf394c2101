"""Breakers shared through a real Redis: an open seen by every replica, trial calls counted for
the fleet.

Each "replica" is a SharedBreaker with a RedisLink and a BreakerBoard of its own, as in separate
gateway processes. One fake clock drives both the local breakers and the scripts, so cool-downs
pass without sleeping; only the delivery of a published change is waited for (by count).
"""

from __future__ import annotations

import asyncio

from circuit.resilience.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy
from circuit.resilience.breaker_board import BreakerBoard
from circuit.resilience.redis_link import RedisLink
from circuit.resilience.shared_breaker import SharedBreaker
from tests.support.clock import FakeClock
from tests.support.redis import SERVER_URL, PrivateRedis

POLICY = BreakerPolicy(window=10, minimum_calls=100, failure_rate=0.5, consecutive_failures=3,
                       cooldown=5, half_open_calls=2)


class Replicas:
    def __init__(self, prefix: str, count: int = 2, url: str = SERVER_URL,
                 trial_lease: float = 60.0) -> None:
        self.clock = FakeClock()
        self.links = [RedisLink(url, timeout=2.0) for _ in range(count)]
        self.changes: list[list] = [[] for _ in range(count)]
        self.breakers = [
            SharedBreaker("p", POLICY, link=link, prefix=prefix, holder=f"replica-{n}",
                          trial_lease=trial_lease, clock=self.clock, wall_clock=self.clock,
                          fleet_clock=self.clock, listeners=[self.changes[n].append])
            for n, link in enumerate(self.links)]
        self.boards = [BreakerBoard(link, {"p": breaker})
                       for link, breaker in zip(self.links, self.breakers, strict=True)]

    async def __aenter__(self) -> Replicas:
        for link, board in zip(self.links, self.boards, strict=True):
            await link.start()
            await board.start()
        await asyncio.sleep(0.05)  # the boards subscribe
        return self

    async def __aexit__(self, *exc) -> None:
        for link, board in zip(self.links, self.boards, strict=True):
            await board.stop()
            await link.stop()

    async def settle(self) -> None:
        """Wait until every background call (verdicts, trips) has been answered."""
        for _ in range(3):
            for link in self.links:
                await link.flush()
            await asyncio.sleep(0)


async def until(predicate, seconds: float = 5.0) -> bool:
    """Whether `predicate()` came to hold within `seconds` (a message's delivery, ~1 ms)."""
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def trip(breaker: SharedBreaker) -> None:
    for _ in range(POLICY.consecutive_failures):
        assert await breaker.claim()
        breaker.record_failure("upstream_server_error")


async def open_everywhere(fleet: Replicas) -> None:
    """Open the breaker on the first replica, wait until every one has it open, and let the
    cool-down pass."""
    await trip(fleet.breakers[0])
    assert await until(lambda: all(x.state == OPEN for x in fleet.breakers))
    fleet.clock.now += POLICY.cooldown


def run(scenario):
    return asyncio.run(scenario())


def test_a_breaker_opened_on_one_replica_is_open_on_the_others(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=3) as fleet:
            a, b, c = fleet.breakers
            await trip(a)
            assert a.state == OPEN
            assert await until(lambda: b.state == OPEN and c.state == OPEN)
            assert await until(lambda: fleet.boards[1].received == 1), "published, not polled"
            assert not await b.claim() and not await c.claim()
            change = fleet.changes[1][-1]
            assert (change.from_state, change.to_state) == (CLOSED, OPEN)
            assert "3 consecutive failures" in change.reason and "replica-0" in change.reason
            assert b.retry_after() == 5
    run(scenario)


def test_a_closed_breaker_asks_redis_nothing(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=1) as fleet:
            breaker, link = fleet.breakers[0], fleet.links[0]
            await fleet.settle()
            before = link.calls
            for _ in range(20):
                assert await breaker.claim()
                breaker.record_success()
            assert link.calls == before
    run(scenario)


def test_after_the_cool_down_the_fleet_gets_half_open_calls_trials_in_all(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=3) as fleet:
            a, b, c = fleet.breakers
            await open_everywhere(fleet)
            granted = [await x.claim() is not None for x in (a, b, c, a, b, c)]
            assert granted.count(True) == POLICY.half_open_calls
            assert granted[:2] == [True, True]  # the first to ask get them
    run(scenario)


def test_trial_successes_on_different_replicas_close_the_breaker_everywhere(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=3) as fleet:
            a, b, c = fleet.breakers
            await open_everywhere(fleet)
            assert await b.claim() and await c.claim()
            b.record_success()
            await fleet.settle()
            assert b.state == HALF_OPEN, "one success of two does not close it"
            c.record_success()
            assert await until(lambda: all(x.state == CLOSED for x in fleet.breakers))
            assert await a.claim()
    run(scenario)


def test_a_failed_trial_opens_the_breaker_again_everywhere_for_a_new_cool_down(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=2) as fleet:
            a, b = fleet.breakers
            await open_everywhere(fleet)
            assert await b.claim() and await a.claim()
            a.record_failure("upstream_timeout")
            await fleet.settle()
            assert await until(lambda: a.state == OPEN and b.state == OPEN)
            assert not await a.claim() and not await b.claim()
            assert b.retry_after() == 5
            b.record_success()  # the other trial's late verdict belongs to a closed round
            await fleet.settle()
            assert a.state == b.state == OPEN
    run(scenario)


def test_an_abandoned_trial_frees_its_slot_for_another_replica(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=2) as fleet:
            a, b = fleet.breakers
            await open_everywhere(fleet)
            assert await a.claim() and await a.claim()
            assert not await b.claim()
            a.record_abandoned()
            await fleet.settle()
            fleet.clock.now += 1  # past b's short wait before asking again
            assert await b.claim()
    run(scenario)


def test_trials_that_never_report_are_given_up_after_the_lease(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=2, trial_lease=30) as fleet:
            a, b = fleet.breakers
            await open_everywhere(fleet)
            assert await a.claim() and await a.claim()  # ...and replica a dies
            fleet.clock.now += 10
            assert not await b.claim()
            fleet.clock.now += 21
            assert await b.claim(), "a new round of trials after the lease"
    run(scenario)


def test_an_operator_reset_on_one_replica_closes_the_breaker_everywhere(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=2) as fleet:
            a, b = fleet.breakers
            await trip(a)
            assert await until(lambda: b.state == OPEN)
            b.reset()
            assert await until(lambda: a.state == CLOSED)
            assert await a.claim()
    run(scenario)


def test_without_redis_a_breaker_is_local_and_publishes_its_open_once_redis_is_back(
        tmp_path, redis_prefix):
    async def scenario(server: PrivateRedis):
        async with Replicas(redis_prefix, count=2, url=server.url) as fleet:
            a, b = fleet.breakers
            server.kill()
            assert await until(lambda: not any(link.up for link in fleet.links))
            await trip(a)  # decided alone, as a local breaker
            assert a.state == OPEN and b.state == CLOSED
            server.start()
            assert await until(lambda: b.state == OPEN, 10), "the open reached b once back"
            assert b.retry_after() <= 5
    with PrivateRedis(tmp_path) as server:
        asyncio.run(scenario(server))
