"""Routes, retries and fallback: a request for gpt-4o served by Claude when OpenAI fails."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import orjson
import pytest

from circuit.errors import UpstreamError, UpstreamFailed
from circuit.gateway.client_watch import ClientWatch
from circuit.gateway.dispatch import Dispatcher, DispatchTrace
from circuit.gateway.hang_up import HangUp
from circuit.gateway.routing import Target
from circuit.providers.anthropic import error_from_anthropic
from circuit.providers.openai import OpenAIProvider
from circuit.providers.upstream_errors import error_from_upstream
from circuit.resilience.breaker import CircuitBreaker
from circuit.resilience.retry import RetryPolicy
from circuit.wire import Call
from tests.fakes.anthropic_upstream import Behaviour as AnthropicBehaviour
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

HELLO = [{"role": "user", "content": "Hello fallback"}]

CONFIG = """
provider = "openai"

[providers.openai]
kind = "openai"
base_url = "{openai}"
api_key_env = "TEST_OPENAI_KEY"
max_attempts = 2
backoff_initial = 0.01

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "TEST_ANTHROPIC_KEY"

[routes]
"gpt-4o" = ["openai:gpt-4o", "anthropic:claude-sonnet-4-5"]
"""


@pytest.fixture
def routed_gateway(tmp_path, upstream, anthropic_upstream):
    (tmp_path / "circuit.toml").write_text(CONFIG.format(openai=upstream.base_url,
                                                         anthropic=anthropic_upstream.base_url))
    server = GatewayServer(tmp_path, TEST_OPENAI_KEY="sk-openai-test-key",
                           TEST_ANTHROPIC_KEY="sk-ant-test-key",
                           CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=100).start()
    yield server
    server.stop()


def _failures(row) -> list[dict]:
    return orjson.loads(row["attempt_errors"]) if row["attempt_errors"] else []


def test_json_falls_back_to_anthropic_when_openai_fails(routed_gateway, upstream,
                                                        anthropic_upstream, request_id):
    upstream.default = Behaviour(status=500)
    response = routed_gateway.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO, extra_headers={"x-request-id": request_id})
    completion = response.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert response.headers["x-circuit-provider"] == "anthropic"
    assert upstream.calls == 2 and anthropic_upstream.calls == 1
    assert anthropic_upstream.last.body["model"] == "claude-sonnet-4-5"
    row = routed_gateway.record(request_id)
    assert (row["provider"], row["upstream_model"], row["attempts"]) == (
        "anthropic", "claude-sonnet-4-5", 3)
    assert (row["api"], row["upstream_api"]) == ("chat", "messages"), "translated upstream"
    assert [(f["provider"], f["error"]) for f in _failures(row)] == [
        ("openai", "upstream_server_error")] * 2
    claude = routed_gateway.gateway.prices.cost_micros("claude-sonnet-4-5", _usage(row))
    assert row["cost_micros"] == claude, "charged at the price of the model that served"


def _usage(row):
    from circuit.wire import Usage

    return Usage(input_tokens=row["tokens_input"], output_tokens=row["tokens_output"],
                 cached_input_tokens=row["tokens_cached"])


def test_stream_falls_back_to_anthropic_when_openai_fails(routed_gateway, upstream,
                                                          anthropic_upstream, request_id):
    upstream.default = Behaviour(status=503)
    chunks = list(routed_gateway.client().chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-request-id": request_id}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens > 0
    row = routed_gateway.record(request_id)
    assert row["provider"] == "anthropic" and row["status"] == "ok"
    assert row["usage_source"] == "provider" and row["attempts"] == 3


def test_a_retry_on_the_same_target_can_succeed(routed_gateway, upstream, anthropic_upstream,
                                                request_id):
    upstream.script(Behaviour(status=502))
    routed_gateway.client().chat.completions.create(
        model="gpt-4o", messages=HELLO, extra_headers={"x-request-id": request_id})
    row = routed_gateway.record(request_id)
    assert (row["provider"], row["attempts"]) == ("openai", 2)
    assert anthropic_upstream.calls == 0


def test_a_client_error_is_neither_retried_nor_passed_to_the_next_target(
        routed_gateway, upstream, anthropic_upstream):
    upstream.script(Behaviour(status=400, error_message="Bad 'temperature'."))
    with pytest.raises(openai.BadRequestError):
        routed_gateway.client().chat.completions.create(model="gpt-4o", messages=HELLO)
    assert upstream.calls == 1 and anthropic_upstream.calls == 0


def test_a_stream_that_fails_after_its_first_byte_is_not_retried(routed_gateway, upstream,
                                                                 anthropic_upstream,
                                                                 request_id):
    upstream.script(Behaviour(drop_after_chunks=2))
    response = httpx.post(routed_gateway.url + "/v1/chat/completions",
                          json={"model": "gpt-4o", "messages": HELLO, "stream": True},
                          headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                   "x-request-id": request_id}, timeout=10)
    assert '"upstream_stream_broken"' in response.text
    assert upstream.calls == 1 and anthropic_upstream.calls == 0
    assert routed_gateway.record(request_id)["status"] == "failed"


def test_a_target_whose_breaker_is_open_is_skipped_without_a_call(routed_gateway, upstream,
                                                                  request_id):
    routed_gateway.gateway.breakers["openai"].force_open()
    routed_gateway.client().chat.completions.create(
        model="gpt-4o", messages=HELLO, extra_headers={"x-request-id": request_id})
    assert upstream.calls == 0
    row = routed_gateway.record(request_id)
    assert row["provider"] == "anthropic" and row["attempts"] == 1
    assert _failures(row) == [{"provider": "openai", "model": "gpt-4o",
                               "error": "breaker_open", "status": 503}]


def test_when_no_target_can_be_tried_the_answer_is_the_structured_503(routed_gateway,
                                                                      request_id):
    for breaker in routed_gateway.gateway.breakers.values():
        breaker.force_open()
    with pytest.raises(openai.InternalServerError) as caught:
        routed_gateway.client().chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.response.json() == {"error": {
        "code": "service_unavailable", "message": "Upstream provider temporarily unavailable"}}


def test_when_every_target_fails_the_last_failure_is_the_answer(routed_gateway, upstream,
                                                                anthropic_upstream,
                                                                request_id):
    upstream.default = Behaviour(status=500)
    anthropic_upstream.default = AnthropicBehaviour(status=529)
    response = httpx.post(routed_gateway.url + "/v1/chat/completions",
                          json={"model": "gpt-4o", "messages": HELLO},
                          headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                   "x-request-id": request_id}, timeout=30)
    assert response.status_code == 502
    assert len(_failures(routed_gateway.record(request_id))) == 5


def test_a_model_without_a_route_goes_to_the_default_provider(routed_gateway, upstream):
    routed_gateway.client().chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert upstream.last.body["model"] == "gpt-4o-mini"


# -- backoff, on an injected clock ------------------------------------------------------------

def test_backoff_is_exponential_with_full_jitter_and_a_cap():
    policy = RetryPolicy(max_attempts=10, backoff_initial=0.5, backoff_max=3.0)
    assert [policy.delay(n, rand=lambda: 0.999999) for n in (1, 2, 3, 4, 5)] == pytest.approx(
        [0.5, 1.0, 2.0, 3.0, 3.0], abs=1e-5)
    assert policy.delay(3, rand=lambda: 0.0) == 0.0
    assert policy.delay(3, rand=lambda: 0.5) == 1.0


def test_retry_after_from_the_upstream_is_honoured():
    assert RetryPolicy().delay(1, retry_after=7.0, rand=lambda: 0.5) == 7.0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _dispatch(upstream, policy: RetryPolicy, clock: _Clock):
    async def run():
        provider = OpenAIProvider("openai", upstream.base_url, "sk-x")
        await provider.start()
        try:
            dispatcher = Dispatcher({"openai": CircuitBreaker("openai")}, {"openai": policy},
                                    sleep=clock.sleep, clock=clock, rand=lambda: 1.0)
            call = Call({"model": "m", "messages": HELLO}, orjson.dumps(
                {"model": "m", "messages": HELLO}), "m", False, "r")
            trace = DispatchTrace()
            try:
                return await dispatcher.call([Target(provider, "m")],
                                             lambda t: t.provider.complete(call), trace, 0.0)
            finally:
                dispatch_trace.append(trace)
        finally:
            await provider.aclose()

    dispatch_trace: list[DispatchTrace] = []
    try:
        return asyncio.run(run()), dispatch_trace[0]
    except UpstreamFailed as error:
        return error, dispatch_trace[0]


def test_retries_wait_the_backoff_between_attempts(upstream):
    upstream.script(*[Behaviour(status=500)] * 3)
    clock = _Clock()
    (target, completion, _), trace = _dispatch(
        upstream, RetryPolicy(max_attempts=4, backoff_initial=1.0, backoff_max=10), clock)
    assert clock.slept == [1.0, 2.0, 4.0]
    assert trace.attempts == 4 and completion.body


def test_retries_honour_retry_after_on_429(upstream):
    upstream.script(Behaviour(status=429, retry_after="5"))
    clock = _Clock()
    _dispatch(upstream, RetryPolicy(max_attempts=2, backoff_initial=1.0), clock)
    assert clock.slept == [5.0]


def test_retries_honour_retry_after_on_a_503(upstream):
    upstream.script(Behaviour(status=503, retry_after="5"))
    clock = _Clock()
    _dispatch(upstream, RetryPolicy(max_attempts=2, backoff_initial=1.0), clock)
    assert clock.slept == [5.0]


@pytest.mark.parametrize("status", [429, 503, 529])
@pytest.mark.parametrize("sent, passed", [("2.5", "3"), ("abc", None), ("-1", None),
                                          ("nan", None), ("inf", None), ("7", "7")])
def test_an_upstream_retry_after_is_passed_on_in_whole_seconds_or_not_at_all(status, sent,
                                                                             passed):
    for error in (error_from_upstream(status, b"{}", {"retry-after": sent}, "openai"),
                  error_from_anthropic(status, b"{}", {"retry-after": sent}, "anthropic")):
        assert error.headers.get("retry-after") == passed, type(error).__name__


def test_a_client_gone_during_a_retry_after_wait_ends_the_wait_and_gets_no_second_call(
        upstream):
    upstream.default = Behaviour(status=429, retry_after="30")
    hang_up = HangUp()
    asked: list[float] = []

    async def forever(seconds: float) -> None:
        asked.append(seconds)
        await asyncio.Event().wait()  # only the hang-up can end this wait

    async def run() -> None:
        provider = OpenAIProvider("openai", upstream.base_url, "sk-x")
        await provider.start()
        watch = ClientWatch(_no_receive, hang_up)
        watch.start(cancel=False)
        try:
            dispatcher = Dispatcher({"openai": CircuitBreaker("openai")},
                                    {"openai": RetryPolicy(max_attempts=3)}, sleep=forever)
            call = Call({"model": "m", "messages": HELLO}, orjson.dumps(
                {"model": "m", "messages": HELLO}), "m", False, "r")
            asyncio.get_running_loop().call_later(0.2, hang_up.fire)
            with pytest.raises(UpstreamError):
                await asyncio.wait_for(dispatcher.call(
                    [Target(provider, "m")], lambda t: t.provider.complete(call),
                    DispatchTrace(watch=watch), time.perf_counter()), 20)
        finally:
            watch.stop()
            await provider.aclose()

    asyncio.run(run())
    assert upstream.calls == 1 and asked == [30.0]


async def _no_receive() -> dict:
    await asyncio.Event().wait()
    return {}


def test_no_retry_starts_past_the_deadline(upstream):
    upstream.default = Behaviour(status=500)
    clock = _Clock()
    error, trace = _dispatch(
        upstream, RetryPolicy(max_attempts=10, backoff_initial=4.0, backoff_max=4.0,
                              deadline=10.0), clock)
    assert isinstance(error, UpstreamFailed)
    assert clock.slept == [4.0, 4.0] and trace.attempts == 3


# -- Anthropic as the provider, seen through the OpenAI SDK ------------------------------------

@pytest.fixture
def anthropic_gateway(tmp_path, anthropic_upstream):
    server = GatewayServer(tmp_path, PROVIDER="anthropic", ANTHROPIC_API_KEY="sk-ant-test",
                           ANTHROPIC_BASE_URL=anthropic_upstream.base_url).start()
    yield server
    server.stop()


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def test_anthropic_tool_calls_reach_the_sdk_as_openai_tool_calls(anthropic_gateway,
                                                                 anthropic_upstream,
                                                                 request_id):
    from tests.fakes.anthropic_upstream import ToolUse

    anthropic_upstream.script(AnthropicBehaviour(
        tool_uses=[ToolUse(name="get_weather", input={"city": "Paris"})]))
    completion = anthropic_gateway.client().chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        tools=[WEATHER_TOOL], extra_headers={"x-request-id": request_id})
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    sent = anthropic_upstream.last.body
    assert sent["system"] == "Be brief." and sent["tools"][0]["name"] == "get_weather"
    assert anthropic_gateway.record(request_id)["usage_source"] == "provider"


def test_anthropic_stream_is_translated_chunk_by_chunk_with_its_own_usage(anthropic_gateway,
                                                                          request_id):
    chunks = list(anthropic_gateway.client().chat.completions.create(
        model="claude-sonnet-4-5", messages=HELLO, stream=True, max_tokens=50,
        extra_headers={"x-request-id": request_id}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and len(chunks) > 3
    row = anthropic_gateway.record(request_id)
    assert row["usage_source"] == "provider" and row["tokens_output"] > 0
    assert row["cost_usd"] > 0 and row["provider"] == "anthropic"


def test_anthropic_cache_tokens_in_a_stream_are_priced_as_cache_reads_and_writes(
        anthropic_gateway, anthropic_upstream, request_id):
    from circuit.wire import Usage

    anthropic_upstream.script(AnthropicBehaviour(cache_read_tokens=500,
                                                 cache_creation_tokens=300))
    list(anthropic_gateway.client().chat.completions.create(
        model="claude-sonnet-4-5", messages=HELLO, stream=True,
        extra_headers={"x-request-id": request_id}))
    row = anthropic_gateway.record(request_id)
    assert row["tokens_cached"] == 500 and row["tokens_input"] >= 800
    expected = anthropic_gateway.gateway.prices.cost_micros("claude-sonnet-4-5", Usage(
        input_tokens=row["tokens_input"], output_tokens=row["tokens_output"],
        cached_input_tokens=500, cache_write_tokens=300))
    assert row["cost_micros"] == expected
