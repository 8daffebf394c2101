"""Four `circuit serve` replicas on one PostgreSQL and one Redis behave like one gateway: a key's
requests and tokens per minute hold for the fleet, a breaker opened on one is open on all, and
when Redis dies requests keep flowing under the fallback policy until the limits return with it.

Redis here is a private `redis-server` (the shared one is never stopped): the last test kills it
mid-run and starts it again. Replicas a, b and c fail open; d fails closed. Assertions count and
order; the one bound taken from the clock is the token buckets' own refill over the burst.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from circuit.keys import create_key
from circuit.store.postgres import PostgresStore
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.reliability.support import GatewayProcess
from tests.support.postgres import fresh_schema
from tests.support.redis import PrivateRedis

PROMPT = [{"role": "user", "content": "Tell me about a fleet of gateways sharing one limit"}]
KEYS = {"rpm": dict(rpm=60), "tpm": dict(tpm=3000), "kill-1": dict(rpm=60),
        "kill-2": dict(rpm=60), "probe": {}}


@dataclass
class Fleet:
    replicas: list[GatewayProcess]
    secrets: dict[str, str]
    redis: PrivateRedis
    upstream: FakeOpenAI
    database_url: str


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    with fresh_schema() as database_url, PrivateRedis(folder) as redis_server, \
            FakeOpenAI() as upstream:
        store = PostgresStore(database_url)
        store.migrate()
        secrets = {name: create_key(store, name, daily_limit_usd=100.0, **limits)
                   for name, limits in KEYS.items()}
        store.close()
        common = dict(CIRCUIT_DATABASE_URL=database_url, CIRCUIT_REDIS_URL=redis_server.url,
                      CIRCUIT_REDIS_PREFIX=f"fleet-{uuid.uuid4().hex[:8]}:",
                      PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                      OPENAI_API_KEY="sk-upstream-fleet-secret", CIRCUIT_RETRY_MAX_ATTEMPTS=1,
                      CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=3, CIRCUIT_BREAKER_COOLDOWN=600)
        replicas = [GatewayProcess(folder / name, CIRCUIT_REDIS_FALLBACK=fallback, **common)
                    for name, fallback in (("a", "open"), ("b", "open"), ("c", "open"),
                                           ("d", "closed"))]
        try:
            for replica in replicas:
                replica.wait_ready(60)
            yield Fleet(replicas, secrets, redis_server, upstream, database_url)
        finally:
            for replica in replicas:
                replica.kill()


@dataclass
class Answer:
    replica: int
    status: int
    code: str
    message: str


async def burst(fleet: Fleet, key: str, count: int, *, replicas: list[int] | None = None,
                max_tokens: int = 16, concurrency: int = 16,
                on_answer=None) -> tuple[list[Answer], float]:
    """`count` requests with one key, round-robin over `replicas`: the answers in order of
    sending, and the seconds from the first sent to the last answered."""
    chosen = replicas or list(range(len(fleet.replicas)))
    gate = asyncio.Semaphore(concurrency)
    answers: list[Answer | None] = [None] * count
    done = 0

    async def one(client: httpx.AsyncClient, n: int) -> None:
        nonlocal done
        replica = chosen[n % len(chosen)]
        async with gate:
            response = await client.post(
                fleet.replicas[replica].url + "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": PROMPT, "max_tokens": max_tokens},
                headers={"Authorization": f"Bearer {fleet.secrets[key]}"})
        error = response.json().get("error", {}) if response.status_code != 200 else {}
        answers[n] = Answer(replica, response.status_code, error.get("code", ""),
                            error.get("message", ""))
        done += 1
        if on_answer is not None:
            on_answer(done)

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        await asyncio.gather(*(one(client, n) for n in range(count)))
    return answers, time.monotonic() - started


def refill(per_minute: int, seconds: float) -> int:
    """What a bucket of `per_minute` refills in `seconds`, rounded up."""
    return int(per_minute * seconds / 60) + 1


def readiness(replica: GatewayProcess) -> tuple[int, dict]:
    response = httpx.get(replica.url + "/readyz", timeout=10)
    return response.status_code, response.json()


def wait_until(predicate, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def records_by_status(fleet: Fleet, key: str) -> dict[str, int]:
    """The key's request records, counted by status (the writers commit within ~10 ms)."""
    with psycopg.connect(fleet.database_url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM requests WHERE key_name = %s "
                                 "GROUP BY status", (key,)).fetchall())


def redis_shared_everywhere(fleet: Fleet) -> bool:
    return all(readiness(r)[1]["checks"]["redis"]["shared"] for r in fleet.replicas)


def test_a_key_gets_its_requests_per_minute_once_for_the_whole_fleet(fleet):
    answers, seconds = asyncio.run(burst(fleet, "rpm", 240))
    served = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    # Alone, each replica would have served 60 (all 240); together they serve the key's 60,
    # and what its bucket refilled during the burst.
    assert 60 <= len(served) <= 60 + refill(60, seconds), (len(served), seconds)
    assert {(a.status, a.code) for a in refused} == {(429, "rate_limit_exceeded")}
    assert {a.replica for a in served} == {0, 1, 2, 3}, "every replica served its share"
    expected = {"ok": len(served), "rejected": len(refused)}
    assert wait_until(lambda: records_by_status(fleet, "rpm") == expected, 10), \
        records_by_status(fleet, "rpm")


def test_a_key_gets_its_tokens_per_minute_once_for_the_whole_fleet(fleet):
    fleet.upstream.default = Behaviour(reply="word " * 150)
    try:
        answers, seconds = asyncio.run(burst(fleet, "tpm", 120, max_tokens=200))
    finally:
        fleet.upstream.default = Behaviour()
    assert wait_until(lambda: sum(records_by_status(fleet, "tpm").values()) == len(answers), 10)
    with psycopg.connect(fleet.database_url) as conn:
        used, served = conn.execute(
            "SELECT coalesce(sum(tokens_input + tokens_output), 0), count(*) FROM requests "
            "WHERE key_name = 'tpm' AND status = 'ok'").fetchone()
    refused = [a for a in answers if a.status != 200]
    assert served == len(answers) - len(refused) > 0
    # Tokens used never pass the key's minute plus its refill, fleet-wide (alone, each replica
    # would have let through its own 3,000).
    assert used <= 3000 + refill(3000, seconds), (used, seconds)
    assert refused and all(a.code == "rate_limit_exceeded" and "3000 tokens per minute"
                           in a.message for a in refused)


def test_a_breaker_opened_on_one_replica_stops_calls_from_every_replica(fleet):
    store = PostgresStore(fleet.database_url)
    try:
        fleet.upstream.default = Behaviour(status=500)
        failing = asyncio.run(burst(fleet, "probe", 3, replicas=[0], concurrency=1))[0]
        assert [a.status for a in failing] == [502, 502, 502]
        # The other replicas hear of it by message; /readyz shows each one's breaker.
        assert wait_until(lambda: all(readiness(r)[1]["checks"]["providers"]["breakers"]
                                      ["openai"] == "open" for r in fleet.replicas), 10)
        calls = fleet.upstream.calls
        others = asyncio.run(burst(fleet, "probe", 6, replicas=[1, 2, 3]))[0]
        assert {(a.status, a.code) for a in others} == {(503, "service_unavailable")}
        assert fleet.upstream.calls == calls, "no replica called the provider the fleet gave up"
        # Each replica's change is in the shared history (saved by its control loop, 0.5 s).
        opened_by = lambda: {e.holder for e in store.breaker_events("openai")  # noqa: E731
                             if e.to_state == "open"}
        assert wait_until(lambda: len(opened_by()) == 4, 10), opened_by()
    finally:
        fleet.upstream.default = Behaviour()
        store.add_breaker_command("openai", "reset")
        store.close()
    assert wait_until(lambda: all(readiness(r)[1]["checks"]["providers"]["breakers"]["openai"]
                                  == "closed" for r in fleet.replicas), 10)


def test_when_redis_dies_requests_keep_flowing_and_the_limits_return_with_it(fleet):
    open_replicas = [0, 1, 2]

    def kill_midway(done: int) -> None:
        if done == 100:
            fleet.redis.kill()

    try:
        answers, _ = asyncio.run(burst(fleet, "kill-1", 300, replicas=open_replicas,
                                       concurrency=8, on_answer=kill_midway))
        # Fail-open: every request was answered, served or limited, never failed.
        assert {a.status for a in answers} <= {200, 429}, {(a.status, a.code) for a in answers}
        assert wait_until(lambda: not any(readiness(r)[1]["checks"]["redis"]["shared"]
                                          for r in fleet.replicas), 10)
        # ...after the kill, each replica let through up to its own 60 from its local bucket.
        assert sum(a.status == 200 for a in answers[150:]) > 0
        status, ready = readiness(fleet.replicas[0])
        assert status == 200 and ready["checks"]["redis"]["ok"] is True
        status, ready = readiness(fleet.replicas[3])
        assert status == 503 and ready["checks"]["redis"]["ok"] is False
        metrics = httpx.get(fleet.replicas[0].url + "/metrics", timeout=10).text
        assert "circuit_redis_up 0.0" in metrics
        # Fail-closed: d refuses the rate-limited key rather than enforce it alone.
        closed = asyncio.run(burst(fleet, "kill-2", 4, replicas=[3]))[0]
        assert {(a.status, a.code) for a in closed} == {(503, "rate_limits_unavailable")}
    finally:
        fleet.redis.start()
    assert wait_until(lambda: redis_shared_everywhere(fleet), 20), "Redis came back unseen"
    answers, seconds = asyncio.run(burst(fleet, "kill-2", 240))
    served = sum(a.status == 200 for a in answers)
    assert 60 <= served <= 60 + refill(60, seconds), (served, seconds)
    assert {a.status for a in answers} == {200, 429}
    for replica in fleet.replicas:
        log = replica.stderr()
        assert log.count(" unreachable (") == 1 and log.count(" is back after ") == 1, log[-2000:]
