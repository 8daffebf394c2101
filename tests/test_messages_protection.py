"""The Messages door keeps every protection of the chat door: a broken stream ends with
Anthropic's error event and its partial text recorded, missing usage is counted locally,
retries before the first byte, the breaker's 503, the budget's refusal — against the fake
Anthropic upstream over real HTTP, with raw httpx and aiohttp clients and the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import anthropic
import httpx
import orjson
import pytest

from tests.fakes.anthropic_upstream import Behaviour, FakeAnthropic
from tests.support.anthropic_sdk import UNAVAILABLE
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

PROVIDER_KEY = "sk-ant-provider-key-0123456789abcdef"
MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "Hello protection"}]
HEADERS = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01",
           "content-type": "application/json"}


@pytest.fixture
def upstream(anthropic_upstream: FakeAnthropic) -> FakeAnthropic:
    """The session's fake Anthropic (tests/conftest.py), reset for each test."""
    return anthropic_upstream


def _gateway(tmp, fake: FakeAnthropic, **env) -> GatewayServer:
    return GatewayServer(tmp, PROVIDER="anthropic", ANTHROPIC_BASE_URL=fake.base_url,
                         ANTHROPIC_API_KEY=PROVIDER_KEY, CIRCUIT_FIRST_BYTE_TIMEOUT=2.0,
                         CIRCUIT_IDLE_TIMEOUT=1.0, CIRCUIT_RETRY_BACKOFF_INITIAL=0.01,
                         **env).start()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_anthropic) -> Iterator[GatewayServer]:
    server = _gateway(tmp_path_factory.mktemp("messages-protect"), fake_anthropic,
                      CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000,
                      CIRCUIT_BREAKER_MINIMUM_CALLS=10_000, CIRCUIT_RETRY_MAX_ATTEMPTS=2)
    yield server
    server.stop()


def _stream(gateway: GatewayServer, **fields) -> tuple[bytes, str]:
    body = {"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True, **fields}
    with httpx.stream("POST", gateway.url + "/v1/messages", content=orjson.dumps(body),
                      headers=HEADERS, timeout=15) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw()), response.headers["x-request-id"]


def _frames(raw: bytes) -> list[tuple[str, dict]]:
    frames = []
    for block in raw.strip().split(b"\n\n"):
        name, data = block.split(b"\n", 1)
        frames.append((name.removeprefix(b"event: ").decode(),
                       orjson.loads(data.removeprefix(b"data: "))))
    return frames


def test_dropped_stream_ends_with_anthropic_error_event_and_partial_text(gateway, upstream):
    upstream.script(Behaviour(drop_after_deltas=3, event_delay=0.02))
    raw, request_id = _stream(gateway)
    frames = _frames(raw)
    assert frames[-1] == ("error", {"type": "error", "error": {
        "type": "api_error", "message": frames[-1][1]["error"]["message"]}})
    assert sum(1 for name, _ in frames if name == "content_block_delta") == 3
    row = gateway.record(request_id)
    assert row["status"] == "failed"
    assert row["partial_text"] == "Echo: Hello protection."
    assert row["usage_source"] == "local"  # message_delta never came: counted by the gateway
    assert row["tokens_output"] > 0


def test_overloaded_error_event_mid_stream_is_relayed_as_the_upstream_sent_it(gateway,
                                                                             upstream):
    # Paced, so the error comes after the first bytes went out (before them it is retried).
    upstream.script(Behaviour(error_event_after_deltas=2, event_delay=0.05))
    raw, request_id = _stream(gateway)
    assert raw.endswith(b'event: error\ndata: {"type":"error","error":{"type":'
                        b'"overloaded_error","message":"Overloaded"}}\n\n')
    assert raw.count(b"event: error") == 1
    assert gateway.record(request_id)["status"] == "failed"


def test_stream_without_usage_is_counted_locally(gateway, upstream):
    upstream.script(Behaviour(omit_usage=True))
    raw, request_id = _stream(gateway)
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    row = gateway.record(request_id)
    assert (row["status"], row["usage_source"]) == ("ok", "local")
    assert row["tokens_output"] > 0 and row["tokens_input"] > 0


def test_json_without_usage_is_counted_locally(gateway, upstream):
    upstream.script(Behaviour(omit_usage=True))
    answer = httpx.post(gateway.url + "/v1/messages", headers=HEADERS, json={
        "model": MODEL, "max_tokens": 64, "messages": HELLO})
    row = gateway.record(answer.headers["x-request-id"])
    assert (row["status"], row["usage_source"]) == ("ok", "local")


def test_overload_before_the_first_byte_is_retried(gateway, upstream):
    upstream.script(Behaviour(status=529))
    answer = httpx.post(gateway.url + "/v1/messages", headers=HEADERS, json={
        "model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True})
    assert answer.status_code == 200 and answer.text.endswith('{"type":"message_stop"}\n\n')
    assert upstream.calls == 2
    assert gateway.record(answer.headers["x-request-id"])["attempts"] == 2


def test_error_event_before_the_first_byte_is_retried(gateway, upstream):
    upstream.script(Behaviour(error_event_after_deltas=-1))
    raw, request_id = _stream(gateway)
    assert b"event: error" not in raw
    assert upstream.calls == 2


def test_aiohttp_raw_stream_gets_the_same_frames(gateway, upstream):
    async def fetch() -> bytes:
        async with aiohttp.ClientSession() as session, session.post(
                gateway.url + "/v1/messages", headers=HEADERS, data=orjson.dumps({
                    "model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True})
        ) as response:
            assert response.status == 200
            return await response.read()

    raw = asyncio.run(fetch())
    names = [name for name, _ in _frames(raw)]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "ping" in names


def test_budget_refuses_what_max_tokens_could_cost(tmp_path, upstream):
    server = _gateway(tmp_path, upstream, CIRCUIT_DAILY_USD_LIMIT=0.01)
    try:
        sdk = anthropic.Anthropic(base_url=server.url, api_key=CLIENT_KEY, max_retries=0,
                                  timeout=15)
        with pytest.raises(anthropic.RateLimitError) as caught:
            # 32,000 output tokens at $15 per million: $0.48, over a $0.01 day.
            sdk.messages.create(model=MODEL, max_tokens=32_000, messages=HELLO)
        assert caught.value.body["error"]["type"] == "rate_limit_error"
        assert upstream.calls == 0
        assert sdk.messages.create(model=MODEL, max_tokens=16, messages=HELLO).content
    finally:
        server.stop()


def test_budget_counts_the_whole_prompt_not_only_max_tokens(tmp_path, upstream):
    server = _gateway(tmp_path, upstream, CIRCUIT_DAILY_USD_LIMIT=0.01)
    try:
        huge = "word " * 200_000  # ~200k tokens of system prompt at $3 per million: $0.60
        answer = httpx.post(server.url + "/v1/messages", headers=HEADERS, json={
            "model": MODEL, "max_tokens": 16, "system": huge, "messages": HELLO}, timeout=30)
        assert answer.status_code == 429
        assert answer.json()["error"]["type"] == "rate_limit_error"
        assert upstream.calls == 0
    finally:
        server.stop()


def test_open_breaker_answers_503_in_anthropic_shape_with_retry_after(tmp_path, upstream):
    server = _gateway(tmp_path, upstream, CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=1,
                      CIRCUIT_RETRY_MAX_ATTEMPTS=1, CIRCUIT_BREAKER_COOLDOWN=60)
    try:
        upstream.script(Behaviour(status=500))
        sdk = anthropic.Anthropic(base_url=server.url, api_key=CLIENT_KEY, max_retries=0,
                                  timeout=15)
        with pytest.raises(anthropic.InternalServerError):
            sdk.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
        with pytest.raises(UNAVAILABLE) as caught:
            sdk.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
        assert caught.value.status_code == 503
        assert caught.value.body == {"type": "error", "error": {
            "type": "overloaded_error", "message": "Upstream provider temporarily unavailable"}}
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert upstream.calls == 1
    finally:
        server.stop()


def test_provider_key_echoed_in_an_error_event_never_reaches_the_client(gateway, upstream):
    upstream.script(Behaviour(error_event_after_deltas=1, error_event_type="api_error",
                              event_delay=0.05,
                              error_message=f"bad key {PROVIDER_KEY} for this request"))
    raw, request_id = _stream(gateway)
    assert PROVIDER_KEY.encode() not in raw
    assert PROVIDER_KEY not in str(gateway.record(request_id))


def test_a_stream_past_its_reservation_is_cut_with_an_anthropic_error_event(tmp_path,
                                                                             upstream):
    # A budget makes the gateway watch the output against what max_tokens reserved.
    server = _gateway(tmp_path, upstream, CIRCUIT_DAILY_USD_LIMIT=5)
    try:
        upstream.default = Behaviour(reply="word " * 3000, ignore_max_tokens=True,
                                     event_delay=0.001)
        raw, request_id = _stream(server, max_tokens=20)
        frames = _frames(raw)
        assert frames[-1][0] == "error" and frames[-1][1]["error"]["type"] == "api_error"
        deltas = sum(1 for name, _ in frames if name == "content_block_delta")
        assert deltas <= 20 + 32, "cut at the bound, not at the end of the upstream's answer"
        row = server.record(request_id)
        assert (row["status"], row["error_code"]) == ("failed", "upstream_overrun")
    finally:
        server.stop()


def test_a_client_that_leaves_mid_stream_drops_the_upstream_call(gateway, upstream):
    upstream.script(Behaviour(event_delay=0.2))
    body = {"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/messages", content=orjson.dumps(body),
                      headers=HEADERS, timeout=15) as response:
        request_id = response.headers["x-request-id"]
        next(response.iter_raw())  # the first event, then the client goes
    assert upstream.wait_for(lambda: upstream.connections_closed_by_client == 1, timeout=10)
    assert gateway.record(request_id)["status"] == "client_disconnected"


def test_the_gateways_own_rate_limit_raises_rate_limit_error_with_retry_after(tmp_path,
                                                                              upstream):
    server = _gateway(tmp_path, upstream, CIRCUIT_DEFAULT_RPM=1)
    try:
        sdk = anthropic.Anthropic(base_url=server.url, api_key=CLIENT_KEY, max_retries=0,
                                  timeout=15)
        sdk.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
        with pytest.raises(anthropic.RateLimitError) as caught:
            sdk.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
        assert caught.value.body["error"]["type"] == "rate_limit_error"
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert upstream.calls == 1
    finally:
        server.stop()


def test_an_unpriced_model_on_a_budgeted_key_raises_permission_denied(gateway, upstream):
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0,
                              timeout=15)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        sdk.messages.create(model="claude-not-in-the-price-table", max_tokens=16,
                            messages=HELLO)
    assert caught.value.body["error"]["type"] == "permission_error"
    assert upstream.calls == 0


def test_json_where_a_stream_was_asked_is_an_anthropic_api_error(gateway, upstream):
    upstream.script(Behaviour(json_for_stream=True))
    answer = httpx.post(gateway.url + "/v1/messages", headers=HEADERS, json={
        "model": MODEL, "max_tokens": 16, "messages": HELLO, "stream": True})
    assert answer.status_code == 502
    assert answer.json()["error"]["type"] == "api_error"
    row = gateway.record(answer.headers["x-request-id"])
    assert (row["status"], row["error_code"]) == ("failed", "upstream_not_streaming")
