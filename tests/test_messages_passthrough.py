"""POST /v1/messages to an Anthropic target: the official `anthropic` SDK against the gateway
on a real port, the fake Anthropic upstream behind it. Bytes pass unchanged both ways but the
provider key; usage is read as it passes; errors arrive in Anthropic's shape."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import orjson
import pytest

from tests.fakes.anthropic_upstream import Behaviour, FakeAnthropic
from tests.support.anthropic_sdk import OVERLOADED
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

PROVIDER_KEY = "sk-ant-provider-key-0123456789abcdef"
MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "Hello passthrough"}]
REPLY = "Echo: Hello passthrough. This is a deterministic reply from the fake upstream."


@pytest.fixture
def upstream(anthropic_upstream: FakeAnthropic) -> FakeAnthropic:
    """The session's fake Anthropic (tests/conftest.py), reset for each test."""
    return anthropic_upstream


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_anthropic) -> Iterator[GatewayServer]:
    server = GatewayServer(
        tmp_path_factory.mktemp("messages-gw"), PROVIDER="anthropic",
        ANTHROPIC_BASE_URL=fake_anthropic.base_url, ANTHROPIC_API_KEY=PROVIDER_KEY,
        CIRCUIT_FIRST_BYTE_TIMEOUT=2.0, CIRCUIT_IDLE_TIMEOUT=1.0,
        CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000, CIRCUIT_BREAKER_MINIMUM_CALLS=10_000,
        CIRCUIT_RETRY_MAX_ATTEMPTS=1).start()
    yield server
    server.stop()


def client(gateway: GatewayServer, key: str = CLIENT_KEY, **options) -> anthropic.Anthropic:
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 15)
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, **options)


def test_create_returns_the_upstreams_message(gateway, upstream):
    message = client(gateway).messages.create(model=MODEL, max_tokens=64, messages=HELLO)
    assert message.content[0].text.startswith("Echo: Hello passthrough.")
    assert message.stop_reason == "end_turn"
    assert upstream.last.api_key == PROVIDER_KEY  # the client's key never goes upstream


def test_json_body_reaches_the_client_byte_for_byte(gateway, upstream):
    raw = orjson.dumps({"model": MODEL, "max_tokens": 64, "messages": HELLO})
    answer = httpx.post(gateway.url + "/v1/messages", content=raw, headers={
        "x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01",
        "content-type": "application/json"})
    assert answer.status_code == 200
    assert upstream.last.raw == raw
    message = orjson.loads(answer.content)
    assert message["type"] == "message" and message["usage"]["output_tokens"] > 0


def test_record_says_messages_door_and_wire_with_provider_usage(gateway, upstream):
    upstream.script(Behaviour(cache_read_tokens=4, cache_creation_tokens=2))
    raw = client(gateway).messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=HELLO)
    message = raw.parse()
    row = gateway.record(raw.headers["x-request-id"])
    assert (row["api"], row["upstream_api"], row["status"]) == ("messages", "messages", "ok")
    assert row["tokens_output"] == message.usage.output_tokens
    assert row["tokens_input"] == message.usage.input_tokens + 4 + 2
    assert row["tokens_cached"] == 4
    assert row["usage_source"] == "provider"


def test_stream_events_reach_the_sdk_in_order(gateway, upstream):
    with client(gateway).messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].text.startswith("Echo: Hello passthrough.")
    assert final.usage.output_tokens > 1


def test_stream_bytes_are_the_upstreams_ping_included(gateway, upstream):
    raw = orjson.dumps({"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": True})
    with httpx.stream("POST", gateway.url + "/v1/messages", content=raw, headers={
            "authorization": f"Bearer {CLIENT_KEY}", "anthropic-version": "2023-06-01"}) as r:
        received = b"".join(r.iter_raw())
    assert r.headers["content-type"].startswith("text/event-stream")
    assert b"event: ping\ndata: {\"type\":\"ping\"}\n\n" in received
    assert received.startswith(b"event: message_start\ndata: ")
    assert received.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert b"[DONE]" not in received


def test_stream_usage_is_recorded_from_message_start_and_delta(gateway, upstream):
    upstream.script(Behaviour(cache_read_tokens=3))
    with client(gateway).messages.with_streaming_response.create(
            model=MODEL, max_tokens=64, messages=HELLO, stream=True) as response:
        request_id = response.headers["x-request-id"]
        for _ in response.iter_lines():
            pass
    row = gateway.record(request_id)
    assert row["status"] == "ok" and row["usage_source"] == "provider"
    assert row["tokens_cached"] == 3
    assert row["tokens_output"] == len(REPLY.split())  # the fake's one token a word


def test_anthropic_version_and_beta_headers_are_forwarded(gateway, upstream):
    client(gateway).messages.create(model=MODEL, max_tokens=16, messages=HELLO, extra_headers={
        "anthropic-beta": "prompt-caching-2024-07-31", "anthropic-version": "2099-01-01"})
    assert upstream.last.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert upstream.last.anthropic_version == "2099-01-01"  # the client's, not the gateway's


def test_unknown_key_raises_authentication_error(gateway, upstream):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client(gateway, key="sk-not-a-circuit-key").messages.create(
            model=MODEL, max_tokens=16, messages=HELLO)
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert upstream.calls == 0


def test_upstream_429_raises_rate_limit_error_with_retry_after(gateway, upstream):
    upstream.script(Behaviour(status=429, retry_after="9"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        client(gateway).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "9"
    assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_upstream_529_raises_overloaded_error(gateway, upstream):
    upstream.script(Behaviour(status=529))
    with pytest.raises(OVERLOADED) as caught:
        client(gateway).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"
    # The record holds the status the client was answered with, not the error's own (502).
    row = gateway.record(caught.value.response.headers["x-request-id"])
    assert row["status_code"] == 529


def test_upstream_500_raises_internal_server_error_in_anthropic_shape(gateway, upstream):
    upstream.script(Behaviour(status=500))
    with pytest.raises(anthropic.InternalServerError) as caught:
        client(gateway).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "api_error"


def test_a_request_refused_at_auth_is_recorded_under_the_messages_door(gateway, upstream):
    answer = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": "sk-wrong"},
                        json={"model": MODEL, "max_tokens": 16, "messages": HELLO})
    assert answer.status_code == 401
    row = gateway.record(answer.headers["x-request-id"])
    assert (row["api"], row["status"], row["status_code"]) == ("messages", "rejected", 401)


def test_missing_max_tokens_is_an_anthropic_shaped_400(gateway, upstream):
    answer = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                        json={"model": MODEL, "messages": HELLO})
    assert answer.status_code == 400
    assert answer.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: Field required"}}
    assert upstream.calls == 0
    assert gateway.record(answer.headers["x-request-id"])["status"] == "rejected"


@pytest.mark.parametrize("body", [
    b"[1, 2]", b"{not json", b"",
    orjson.dumps({"model": 7, "max_tokens": 5, "messages": HELLO}),
    orjson.dumps({"model": MODEL, "max_tokens": "5", "messages": HELLO}),
    orjson.dumps({"model": MODEL, "max_tokens": True, "messages": HELLO}),
    orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": "hi"}),
    orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": []}),
    orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "system",
                                                                "content": "x"}]}),
    orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": "yes"}),
    orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": HELLO, "system": 3}),
    orjson.dumps({"model": MODEL, "max_tokens": 5, "messages": HELLO, "tools": {}}),
])
def test_hostile_bodies_get_an_anthropic_shaped_400(gateway, upstream, body):
    answer = httpx.post(gateway.url + "/v1/messages", content=body,
                        headers={"x-api-key": CLIENT_KEY, "content-type": "application/json"})
    assert answer.status_code == 400
    error = answer.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert upstream.calls == 0


def test_sdk_raises_bad_request_error_for_a_hostile_body(gateway, upstream):
    with pytest.raises(anthropic.BadRequestError):
        client(gateway).messages.create(model=MODEL, max_tokens=16,
                                        messages=[{"role": "user", "content": 5}])


def claude_code_body() -> bytes:
    """A request shaped like Claude Code's: a long system prompt in blocks with cache_control,
    tools, thinking, metadata, max_tokens 32000, a stream; serialised loosely (indentation,
    non-ASCII kept) so any re-serialisation on the way would show."""
    import json

    system = [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
              {"type": "text", "text": "Guidelines — répondez brièvement. " * 2000,
               "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": name, "description": f"The {name} tool.", "input_schema": {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
        for name in ("Read", "Edit", "Bash", "Grep", "Glob")]
    tools[-1]["cache_control"] = {"type": "ephemeral"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>context</system-reminder>"},
        {"type": "text", "text": "Fix the failing test", "cache_control": {"type": "ephemeral"}},
    ]}], "temperature": 1, "system": system, "tools": tools,
        "metadata": {"user_id": "user_abc_account_123_session_456"},
        "max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 31999},
        "stream": True}
    return json.dumps(body, indent=1, ensure_ascii=False).encode()


def test_claude_code_request_passes_through_byte_exact(gateway, upstream):
    raw = claude_code_body()
    beta = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
    with httpx.stream("POST", gateway.url + "/v1/messages", content=raw, headers={
            "authorization": f"Bearer {CLIENT_KEY}", "anthropic-version": "2023-06-01",
            "anthropic-beta": beta, "content-type": "application/json",
            "x-app": "cli", "user-agent": "claude-cli/2.0.0 (external, cli)"}) as response:
        received = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert upstream.last.raw == raw
    assert upstream.last.headers["anthropic-beta"] == beta
    assert upstream.last.api_key == PROVIDER_KEY
    assert CLIENT_KEY not in str(upstream.last.headers)
    assert received.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    row = gateway.record(response.headers["x-request-id"])
    assert (row["api"], row["upstream_api"], row["status"]) == ("messages", "messages", "ok")


def test_a_routed_model_name_is_the_only_change_to_the_body(tmp_path, upstream):
    fake = upstream
    (tmp_path / "circuit.toml").write_text(
        'provider = "anthropic"\n[routes]\n"claude-latest" = ["anthropic:claude-sonnet-4-5"]\n')
    server = GatewayServer(tmp_path, ANTHROPIC_BASE_URL=fake.base_url,
                           ANTHROPIC_API_KEY=PROVIDER_KEY).start()
    try:
        client(server).messages.create(model="claude-latest", max_tokens=16, messages=HELLO)
        assert fake.last.body == {"model": MODEL, "max_tokens": 16, "messages": HELLO}
    finally:
        server.stop()


def test_body_over_the_size_limit_is_an_anthropic_413(gateway, upstream):
    limit = gateway.settings.max_body_bytes
    answer = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                        content=b'{"model": "' + b"x" * (limit + 1) + b'"}')
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"
    assert upstream.calls == 0


def test_deeply_nested_body_is_an_anthropic_400_not_a_500(gateway, upstream):
    nested = b'{"model": "m", "max_tokens": 5, "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                        content=nested)
    assert answer.status_code == 400
    assert answer.json()["type"] == "error"


def test_mock_provider_serves_the_messages_door_translated(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock").start()
    try:
        raw = client(server).messages.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=32, messages=HELLO)
        assert raw.parse().content[0].type == "text"
        assert server.record(raw.headers["x-request-id"])["upstream_api"] == "chat"
        with client(server).messages.stream(model="gpt-4o-mini", max_tokens=32,
                                            messages=HELLO) as stream:
            assert "".join(stream.text_stream)
    finally:
        server.stop()


def _same_ids(raw: bytes) -> bytes:
    import re

    return re.sub(rb"msg_fake\d+", b"msg_X", raw)


@pytest.mark.parametrize("stream", [False, True])
def test_the_client_receives_exactly_the_bytes_the_upstream_sends(gateway, upstream, stream):
    raw = orjson.dumps({"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": stream})
    headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    direct = httpx.post(upstream.base_url + "/v1/messages", content=raw,
                        headers={**headers, "x-api-key": PROVIDER_KEY}).content
    through = httpx.post(gateway.url + "/v1/messages", content=raw,
                         headers={**headers, "x-api-key": CLIENT_KEY}).content
    assert _same_ids(through) == _same_ids(direct)


def test_claude_codes_beta_query_string_is_passed_on(gateway, upstream):
    # Claude Code posts to /v1/messages?beta=true (the TypeScript SDK's beta client).
    answer = httpx.post(gateway.url + "/v1/messages?beta=true", headers={
        "authorization": f"Bearer {CLIENT_KEY}", "anthropic-version": "2023-06-01",
        "anthropic-beta": "context-management-2025-06-27"},
        json={"model": MODEL, "max_tokens": 16, "messages": HELLO})
    assert answer.status_code == 200
    assert (upstream.last.path, upstream.last.query) == ("/v1/messages", "beta=true")
    assert upstream.last.headers["anthropic-beta"] == "context-management-2025-06-27"


def test_an_odd_query_string_is_dropped_not_forwarded(gateway, upstream):
    answer = httpx.post(gateway.url + "/v1/messages?x=%0d%0aHost:%20evil", headers={
        "x-api-key": CLIENT_KEY}, json={"model": MODEL, "max_tokens": 16, "messages": HELLO})
    assert answer.status_code == 200
    assert upstream.last.query == ""


@pytest.mark.parametrize("stream", [False, True])
def test_an_sdk_client_that_times_out_on_a_slow_upstream_is_recorded_as_gone(gateway, upstream,
                                                                            stream):
    # The SDK gives up at 0.4 s; the upstream would answer at 1.5 s, inside the gateway's 2 s
    # first-byte timeout: only a watch on the client can tell what happened.
    upstream.script(Behaviour(hang=1.5))
    request_id = f"sdk-gone-{stream}"
    with pytest.raises(anthropic.APITimeoutError):
        client(gateway, timeout=0.4).messages.create(
            model=MODEL, max_tokens=64, messages=HELLO, stream=stream,
            extra_headers={"x-request-id": request_id})
    row = gateway.record(request_id)
    assert (row["api"], row["status"], row["status_code"], row["error_code"]) == (
        "messages", "client_disconnected", 499, "client_disconnected")
    assert row["attempts"] == 1
    if stream:
        # Cut before its first event (the upstream stops when its connection drops): its
        # input is charged, counted locally.
        assert (row["usage_source"], row["tokens_output"]) == ("local", 0)
    else:
        # An upstream may finish and bill a JSON answer nobody reads: it runs to its end and
        # is charged what it reports.
        assert row["usage_source"] == "provider" and row["tokens_output"] > 0
    assert row["tokens_input"] > 0
