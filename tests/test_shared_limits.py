"""Rate limits shared through a real Redis: one bucket per key for every replica.

Each "replica" here is a SharedRateLimiter with a RedisLink of its own, as in two gateway
processes; the buckets run on an injected clock passed to the scripts, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from circuit.errors import LimitsUnavailable, RateLimitExceeded
from circuit.resilience.rate_limit import Limits
from circuit.resilience.redis_link import RedisLink
from circuit.resilience.shared_limits import SharedRateLimiter
from tests.support.clock import FakeClock
from tests.support.redis import SERVER_URL, PrivateRedis, free_port

RPM_3 = Limits(rpm=3, tpm=None)
TPM_1000 = Limits(rpm=None, tpm=1000)


class Replicas:
    """`count` limiters on one Redis and one clock, each with its own link."""

    def __init__(self, prefix: str, count: int = 2, url: str = SERVER_URL,
                 fallback: str = "open", timeout: float = 2.0) -> None:
        self.clock = FakeClock()
        self.links = [RedisLink(url, timeout=timeout, fallback=fallback) for _ in range(count)]
        self.limiters = [SharedRateLimiter(link, prefix=prefix, clock=self.clock,
                                           fail_closed=fallback == "closed")
                         for link in self.links]

    async def __aenter__(self) -> Replicas:
        for link in self.links:
            await link.start()
        return self

    async def __aexit__(self, *exc) -> None:
        for link in self.links:
            await link.stop()


def run(scenario):
    return asyncio.run(scenario())


async def admitted(limiter: SharedRateLimiter, key: str, limits: Limits, tokens: int = 0) -> bool:
    try:
        await limiter.admit(key, limits, tokens)
    except RateLimitExceeded:
        return False
    return True


def test_a_key_gets_its_requests_per_minute_once_across_replicas(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix) as fleet:
            a, b = fleet.limiters
            assert [await admitted(x, "k", RPM_3) for x in (a, b, a, b)] == \
                [True, True, True, False]
    run(scenario)


def test_retry_after_is_the_shared_buckets_wait_to_the_second(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix) as fleet:
            a, b = fleet.limiters
            for _ in range(3):
                await a.admit("k", RPM_3, 0)
            with pytest.raises(RateLimitExceeded) as caught:
                await b.admit("k", RPM_3, 0)
            assert caught.value.headers["retry-after"] == "20"  # one request every 20 s
            assert "3 requests per minute" in caught.value.message
            fleet.clock.now += 19.5
            with pytest.raises(RateLimitExceeded) as caught:
                await a.admit("k", RPM_3, 0)
            assert caught.value.headers["retry-after"] == "1"
            fleet.clock.now += 0.5
            await b.admit("k", RPM_3, 0)
    run(scenario)


def test_concurrent_admissions_from_every_replica_never_pass_the_limit(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=4) as fleet:
            limits = Limits(rpm=60, tpm=None)
            outcomes = await asyncio.gather(*(admitted(fleet.limiters[n % 4], "k", limits)
                                              for n in range(240)))
            assert outcomes.count(True) == 60
    run(scenario)


def test_a_settlement_rides_the_same_round_trip_as_the_next_admission(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=1) as fleet:
            link, limiter = fleet.links[0], fleet.limiters[0]
            limiter.settle("warm", TPM_1000, borrowed=1, used=0)  # both scripts loaded
            await limiter.admit("k", TPM_1000, 900)
            trips = link.round_trips
            limiter.settle("k", TPM_1000, borrowed=900, used=100)
            assert await admitted(limiter, "k", TPM_1000, 800)
            assert link.round_trips - trips == 1
    run(scenario)


def test_a_settlement_no_admission_follows_is_sent_on_its_own_shortly(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix) as fleet:
            a, b = fleet.limiters
            await a.admit("k", TPM_1000, 900)
            a.settle("k", TPM_1000, borrowed=900, used=100)
            trips = fleet.links[0].round_trips
            for _ in range(500):  # it waits LINGER_SECONDS (20 ms) for a pipeline to ride in
                if fleet.links[0].round_trips > trips:
                    break
                await asyncio.sleep(0.01)
            await fleet.links[0].flush()
            assert fleet.links[0].round_trips == trips + 1
            assert await admitted(b, "k", TPM_1000, 800)
    run(scenario)


def test_tokens_settled_on_one_replica_are_free_on_another(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix) as fleet:
            a, b = fleet.limiters
            await a.admit("k", TPM_1000, 900)
            assert not await admitted(b, "k", TPM_1000, 800)
            a.settle("k", TPM_1000, borrowed=900, used=100)  # sent with a's next pipeline
            await fleet.links[0].flush()
            assert await admitted(b, "k", TPM_1000, 800)
    run(scenario)


def test_a_refused_admission_takes_from_no_bucket(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix) as fleet:
            a, b = fleet.limiters
            both = Limits(rpm=2, tpm=1000)
            await a.admit("k", both, 900)
            assert not await admitted(b, "k", both, 200)  # tokens short: the request not taken
            assert await admitted(b, "k", both, 100)
            assert not await admitted(a, "k", both, 0)  # now two requests were taken
    run(scenario)


def test_a_request_larger_than_the_whole_minute_is_refused_without_asking_redis(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix) as fleet:
            before = fleet.links[0].calls
            with pytest.raises(RateLimitExceeded, match="more than the key's limit"):
                await fleet.limiters[0].admit("k", Limits(rpm=None, tpm=100), 101)
            assert fleet.links[0].calls == before
    run(scenario)


def test_each_key_has_its_own_buckets_and_a_changed_limit_starts_full(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix) as fleet:
            a, b = fleet.limiters
            one = Limits(rpm=1, tpm=None)
            assert await admitted(a, "noisy", one)
            assert not await admitted(b, "noisy", one)
            assert await admitted(b, "quiet", one)
            assert await admitted(b, "noisy", Limits(rpm=5, tpm=None))
    run(scenario)


def test_keys_without_limits_never_reach_redis(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=1) as fleet:
            before = fleet.links[0].calls
            for _ in range(10):
                await fleet.limiters[0].admit("k", Limits(rpm=None, tpm=None), 500)
            assert fleet.links[0].calls == before
    run(scenario)


def test_admissions_made_together_share_one_round_trip(redis_prefix):
    async def scenario():
        async with Replicas(redis_prefix, count=1) as fleet:
            link, limiter = fleet.links[0], fleet.limiters[0]
            limits = Limits(rpm=1000, tpm=None)
            await limiter.admit("warm", limits, 0)  # scripts loaded
            trips, calls = link.round_trips, link.calls
            await asyncio.gather(*(limiter.admit(f"k{n}", limits, 0) for n in range(50)))
            assert link.calls - calls == 50
            assert link.round_trips - trips <= 2, "50 admissions at once are pipelined"
    run(scenario)


def test_without_redis_fail_open_enforces_the_limits_locally(redis_prefix):
    async def scenario():
        dead = f"redis://127.0.0.1:{free_port()}/0"
        async with Replicas(redis_prefix, count=1, url=dead) as fleet:
            link, limiter = fleet.links[0], fleet.limiters[0]
            assert not link.up and link.readiness()["ok"] and not link.readiness()["shared"]
            assert [await admitted(limiter, "k", RPM_3) for _ in range(4)] == \
                [True, True, True, False]
            assert link.local_decisions == 4
    run(scenario)


def test_without_redis_fail_closed_refuses_limited_keys_and_serves_the_others(redis_prefix):
    async def scenario():
        dead = f"redis://127.0.0.1:{free_port()}/0"
        async with Replicas(redis_prefix, count=1, url=dead, fallback="closed") as fleet:
            link, limiter = fleet.links[0], fleet.limiters[0]
            with pytest.raises(LimitsUnavailable) as caught:
                await limiter.admit("k", RPM_3, 0)
            assert caught.value.status == 503 and caught.value.headers["retry-after"] == "1"
            await limiter.admit("unlimited", Limits(rpm=None, tpm=None), 0)
            assert link.refusals == 1 and not link.readiness()["ok"]
    run(scenario)


def test_a_replica_goes_back_to_the_shared_buckets_when_redis_returns(tmp_path, redis_prefix):
    async def scenario(server: PrivateRedis):
        async with Replicas(redis_prefix, url=server.url) as fleet:
            a, b = fleet.limiters
            link = fleet.links[0]
            assert await admitted(a, "k", RPM_3)
            server.kill()
            # The first call to fail takes the link down; then each replica decides alone.
            assert await admitted(a, "k", RPM_3)
            assert not link.up and link.outages == 1
            assert [await admitted(a, "k", RPM_3) for _ in range(3)] == [True, True, False]
            server.start()
            for _ in range(200):  # the watcher pings every 0.5 s: back within ~0.5 s
                if all(x.up for x in fleet.links):
                    break
                await asyncio.sleep(0.05)
            assert all(x.up for x in fleet.links), "the links did not come back"
            # A fresh Redis: full buckets, shared again (a's local bucket is spent).
            assert [await admitted(x, "k", RPM_3) for x in (a, b, a, b)] == \
                [True, True, True, False]
            assert link.outages == 1
    with PrivateRedis(tmp_path) as server:
        asyncio.run(scenario(server))


def test_a_redis_that_stops_answering_costs_one_timeout_not_one_per_request(tmp_path,
                                                                           redis_prefix):
    async def scenario(server: PrivateRedis):
        async with Replicas(redis_prefix, count=1, url=server.url, timeout=0.5) as fleet:
            link, limiter = fleet.links[0], fleet.limiters[0]
            assert await admitted(limiter, "warm", RPM_3)
            os.kill(server.process.pid, signal.SIGSTOP)  # accepts nothing, answers nothing
            try:
                trips = link.round_trips
                first = asyncio.ensure_future(admitted(limiter, "k", RPM_3))
                await asyncio.sleep(0)  # its pipeline is in flight; the rest queue behind it
                outcomes = await asyncio.gather(first, *(admitted(limiter, "k", RPM_3)
                                                         for _ in range(20)))
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            assert link.round_trips - trips == 1, "only the first pipeline waited"
            assert not link.up and outcomes.count(True) == 3  # decided by the local bucket
    with PrivateRedis(tmp_path) as server:
        asyncio.run(scenario(server))
