"""Budgets, rate limits and the breaker, through the real server."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from circuit.keys import create_key
from circuit.store.sqlite import SQLiteStore
from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

HELLO = [{"role": "user", "content": "Hello budget"}]
BODY = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 20}
SERVICE_UNAVAILABLE = {"error": {"code": "service_unavailable",
                                 "message": "Upstream provider temporarily unavailable"}}


def _post(gateway, key=CLIENT_KEY, body=BODY, **kwargs) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=10, **kwargs)


def _next_full_tick(gateway, timeout=30.0) -> None:
    """Wait (counting, not timing) until the gateway's control loop has run one whole tick
    after now: what its "within a second" promises rest on (a tick is 0.5 s)."""
    control = gateway.gateway.control
    start = control.ticks
    assert _wait_until(lambda: control.ticks >= start + 2, timeout), "the control loop ran"


def _wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def gateway(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock").start()
    yield server
    server.stop()


@pytest.fixture
def upstream_gateway(tmp_path, upstream):
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY, CIRCUIT_FIRST_BYTE_TIMEOUT=5,
                           CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=3,
                           CIRCUIT_BREAKER_COOLDOWN=0.5, CIRCUIT_BREAKER_HALF_OPEN_CALLS=1,
                           CIRCUIT_RETRY_MAX_ATTEMPTS=1).start()
    yield server
    server.stop()


def _add_key(gateway, name, **limits) -> str:
    store = SQLiteStore(gateway.db_path)
    try:
        secret = create_key(store, name, **limits)
    finally:
        store.close()
    assert _wait_until(lambda: _post(gateway, secret).status_code != 401), "key not picked up"
    return secret


# -- budgets -----------------------------------------------------------------------------------

def test_concurrent_requests_never_spend_past_the_daily_limit(gateway):
    secret = _add_key(gateway, "burst", daily_limit_usd=0.001)

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            return await asyncio.gather(*(
                client.post(gateway.url + "/v1/chat/completions", json=BODY,
                            headers={"Authorization": f"Bearer {secret}"})
                for _ in range(200)))

    responses = asyncio.run(fire())
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}, statuses
    refused = [r for r in responses if r.status_code == 429]
    assert all(r.json()["error"]["code"] == "quota_exceeded" for r in refused)
    # Waited for by the key's own rows: the probes that found the key not yet live (401s,
    # no key name) count among all rows, and the last of the burst's could still be on its way.
    def burst_rows() -> list[dict]:
        return [r for r in gateway.records() if r["key_name"] == "burst"]

    _wait_until(lambda: len(burst_rows()) >= 201, timeout=10)
    burst = burst_rows()
    assert len(burst) == 201  # the 200 and the request that checked the key was live
    assert sum(r["cost_micros"] or 0 for r in burst) <= 1000
    assert sum(r["status"] == "ok" for r in burst) >= 20, "the limit allows some of them"


def test_quota_refusal_says_the_limit_and_when_it_resets_and_sends_nothing_upstream(
        upstream_gateway, upstream):
    secret = _add_key(upstream_gateway, "tiny", daily_limit_usd=0.000001)
    calls = upstream.calls
    response = _post(upstream_gateway, secret)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded" and error["type"] == "insufficient_quota"
    assert "$0.00" in error["message"] and "resets at 00:00 UTC" in error["message"]
    assert int(response.headers["retry-after"]) > 0
    assert upstream.calls == calls
    row = upstream_gateway.record(response.headers["x-request-id"])
    assert (row["status"], row["error_code"]) == ("rejected", "quota_exceeded")


def test_spend_survives_a_restart(tmp_path):
    first = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_DAILY_USD_LIMIT=0.0001).start()
    try:
        statuses = [_post(first).status_code for _ in range(12)]
    finally:
        first.stop()
    assert statuses.count(200) >= 1 and statuses[-1] == 429
    again = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_DAILY_USD_LIMIT=0.0001).start()
    try:
        assert _post(again).status_code == 429
        rows = again.records(expect=13)
        assert sum(r["cost_micros"] or 0 for r in rows) <= 100
    finally:
        again.stop()


def test_a_raised_limit_takes_effect_within_a_second(gateway):
    secret = _add_key(gateway, "grow", daily_limit_usd=1.0)
    store = SQLiteStore(gateway.db_path)
    store.update_key("grow", daily_limit_usd=0.000001)
    _next_full_tick(gateway)
    assert _post(gateway, secret).status_code == 429
    store.update_key("grow", daily_limit_usd=1.0)
    _next_full_tick(gateway)
    assert _post(gateway, secret).status_code == 200
    store.close()


# -- rate limits -------------------------------------------------------------------------------

def test_requests_per_minute_get_429_with_retry_after(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_DEFAULT_RPM=2).start()
    try:
        started = time.monotonic()
        statuses = [_post(server) for _ in range(3)]
        elapsed = time.monotonic() - started
        assert [r.status_code for r in statuses] == [200, 200, 429]
        refused = statuses[-1]
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        # One request per 30 s: the wait left is 30 s less what the three requests took (28
        # was seen on a machine under two busy-loop processes), rounded up.
        assert 30 - elapsed - 1 <= int(refused.headers["retry-after"]) <= 30
        assert server.record(refused.headers["x-request-id"])["status"] == "rejected"
    finally:
        server.stop()


def test_a_noisy_key_does_not_hold_back_another(gateway):
    noisy = _add_key(gateway, "noisy", rpm=1)
    quiet = _add_key(gateway, "quiet", rpm=1000)

    async def fire():
        async with httpx.AsyncClient(timeout=30) as client:
            def call(key):
                return client.post(gateway.url + "/v1/chat/completions", json=BODY,
                                   headers={"Authorization": f"Bearer {key}"})
            return await asyncio.gather(*(call(noisy) for _ in range(100)),
                                        *(call(quiet) for _ in range(20)))

    responses = asyncio.run(fire())
    assert {r.status_code for r in responses[:100]} == {429}
    assert [r.status_code for r in responses[100:]] == [200] * 20


def test_tokens_per_minute_limit_a_key(gateway):
    secret = _add_key(gateway, "wordy", tpm=130)
    body = {**BODY, "max_tokens": 60}
    assert _post(gateway, secret, body).status_code == 200
    refused = _post(gateway, secret, body)
    assert refused.status_code == 429
    assert "130 tokens per minute" in refused.json()["error"]["message"]


# -- circuit breaker ---------------------------------------------------------------------------

def test_breaker_opens_refuses_at_once_probes_after_cooldown_and_closes(upstream_gateway,
                                                                        upstream):
    upstream.script(*[Behaviour(status=500)] * 3)
    assert [_post(upstream_gateway).status_code for _ in range(3)] == [502] * 3

    upstream.script(Behaviour(hang=3.0))  # were it called, the client would wait 3 s
    calls = upstream.calls
    refused = _post(upstream_gateway)
    assert refused.status_code == 503
    assert refused.json() == SERVICE_UNAVAILABLE
    assert 1 <= int(refused.headers["retry-after"]) <= 1
    assert upstream.calls == calls, "an open breaker does not touch the provider"
    row = upstream_gateway.record(refused.headers["x-request-id"])
    assert (row["status"], row["error_code"]) == ("rejected", "service_unavailable")

    upstream.reset()  # healthy again
    time.sleep(0.6)  # the cool-down (0.5 s) passes
    assert _post(upstream_gateway).status_code == 200
    assert upstream.calls == 1
    assert upstream_gateway.gateway.breakers["openai"].state == "closed"


def test_breaker_reopens_when_the_trial_call_fails(upstream_gateway, upstream):
    upstream.script(*[Behaviour(status=503)] * 4)
    for _ in range(3):
        _post(upstream_gateway)
    time.sleep(0.6)
    assert _post(upstream_gateway).status_code == 502  # the trial, failing
    assert _post(upstream_gateway).status_code == 503
    assert upstream_gateway.gateway.breakers["openai"].state == "open"


def test_client_errors_do_not_open_the_breaker(upstream_gateway, upstream):
    upstream.script(*[Behaviour(status=400)] * 5)
    assert [_post(upstream_gateway).status_code for _ in range(5)] == [400] * 5
    assert upstream_gateway.gateway.breakers["openai"].state == "closed"


def test_streams_dropped_midway_count_as_failures(upstream_gateway, upstream):
    upstream.script(*[Behaviour(drop_after_chunks=1)] * 3)
    for _ in range(3):
        _post(upstream_gateway, body={**BODY, "stream": True})
    # Its state, not a fourth call: on a busy machine the 0.5 s cool-down may be over by then.
    breaker = upstream_gateway.gateway.breakers["openai"]
    assert _wait_until(lambda: breaker.state == "open")
    assert breaker.last_failure[0] == "upstream_stream_broken"


def test_breaker_state_changes_are_recorded_for_other_processes(upstream_gateway, upstream):
    upstream.script(*[Behaviour(status=500)] * 3)
    for _ in range(3):
        _post(upstream_gateway)
    store = SQLiteStore(upstream_gateway.db_path)
    try:
        assert _wait_until(lambda: any(e.to_state == "open"
                                       for e in store.breaker_events("openai")))
        event = store.breaker_events("openai")[0]
        assert (event.from_state, event.to_state) == ("closed", "open")
        assert "consecutive failures" in event.reason
        assert _wait_until(lambda: [s.state for s in store.breaker_states()
                                    if s.provider == "openai"] == ["open"])
    finally:
        store.close()


def test_operator_commands_reach_the_running_breaker_within_a_second(upstream_gateway):
    store = SQLiteStore(upstream_gateway.db_path)
    try:
        breaker = upstream_gateway.gateway.breakers["openai"]
        store.add_breaker_command("openai", "open")
        _next_full_tick(upstream_gateway)
        # (Its 0.5 s cool-down may be over already; it moves on only at the next call.)
        assert breaker.state == "open"
        store.add_breaker_command("openai", "reset")
        _next_full_tick(upstream_gateway)
        assert breaker.state == "closed"
        assert _post(upstream_gateway).status_code == 200
    finally:
        store.close()


def test_every_refusal_is_recorded_in_order_auth_rate_budget_breaker(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_DEFAULT_RPM=1,
                           CIRCUIT_DAILY_USD_LIMIT=0.000001).start()
    try:
        # A bad key is refused before the rate limit is consulted.
        assert _post(server, key="sk-wrong-key-123456").status_code == 401
        first = _post(server)
        assert first.json()["error"]["code"] == "quota_exceeded"  # rate limit passed
        second = _post(server)
        assert second.json()["error"]["code"] == "rate_limit_exceeded"
        rows = server.records(expect=3)
        assert [r["error_code"] for r in rows] == ["invalid_api_key", "quota_exceeded",
                                                  "rate_limit_exceeded"]
        assert all(r["status"] == "rejected" for r in rows)
        assert orjson.loads(second.content)["error"]["type"] == "rate_limit_error"
    finally:
        server.stop()


def test_an_exempted_key_is_not_held_to_the_default_daily_limit(tmp_path):
    from circuit.keys import NO_DAILY_LIMIT

    server = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_DAILY_USD_LIMIT=0.000001).start()
    try:
        assert _post(server).status_code == 429  # the default: nearly nothing
        secret = _add_key(server, "internal", daily_limit_usd=NO_DAILY_LIMIT)
        assert [_post(server, secret).status_code for _ in range(3)] == [200] * 3
    finally:
        server.stop()
