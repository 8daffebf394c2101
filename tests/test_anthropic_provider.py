"""AnthropicProvider against the fake Anthropic upstream, over real HTTP.

Each test runs its own event loop (`asyncio.run`) with a started provider; the fake checks
every request the way the real Messages API does, so a translation mistake shows up as a 400.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import orjson
import pytest

from circuit.accounting.stream_tally import StreamTally
from circuit.errors import (
    StreamBroken,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from circuit.providers.anthropic import AnthropicProvider
from circuit.providers.anthropic_stream import StreamTranslator
from circuit.providers.base import Timeouts
from circuit.wire import Call, StreamEvent, Usage
from tests.fakes.anthropic_upstream import (
    REPLY_SUFFIX,
    TOOL_USE_TOKENS,
    Behaviour,
    FakeAnthropic,
    ToolUse,
    count_input_tokens,
)

KEY = "sk-ant-provider-secret-0042"
MODEL = "claude-sonnet-4-5-20250929"
USER = [{"role": "user", "content": "hello there world"}]
REPLY = f"Echo: hello there world. {REPLY_SUFFIX}"
#: Short enough to keep the timeout tests quick, long enough that a healthy answer on a machine
#: under two busy-loop processes is not taken for a timeout (0.5 s was: a 529 came as a 504).
FAST = Timeouts(connect=1.0, first_byte=3.0, idle=1.5)
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}

T = TypeVar("T")


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_keys={KEY}) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> FakeAnthropic:
    fake_server.reset()
    return fake_server


def run(fake: FakeAnthropic, use: Callable[[AnthropicProvider], Awaitable[T]], *,
        key: str = KEY, timeouts: Timeouts = FAST, **options: Any) -> T:
    """Start a provider on the fake, run `use(provider)` in a fresh loop, close it."""
    async def main() -> T:
        provider = AnthropicProvider("anthropic", fake.base_url, key, timeouts, **options)
        await provider.start()
        try:
            return await use(provider)
        finally:
            await provider.aclose()
    return asyncio.run(main())


def chat(stream: bool = False, **fields: Any) -> Call:
    body = {"model": "claude-latest", "messages": USER, **fields}
    if stream:
        body["stream"] = True
    return Call(body, orjson.dumps(body), MODEL, stream, "req-test")


def complete(fake: FakeAnthropic, call: Call, **options: Any) -> tuple[dict, Any]:
    """(the OpenAI body, the Completion)."""
    completion = run(fake, lambda p: p.complete(call), **options)
    return orjson.loads(completion.body), completion


def sent(fake: FakeAnthropic, **fields: Any) -> dict[str, Any]:
    """The Anthropic body the provider sent for an OpenAI request with `fields`."""
    complete(fake, chat(**fields))
    assert fake.last.rejection is None, fake.last.rejection
    return fake.last.body


async def _drain(provider: AnthropicProvider, call: Call) -> list[list[StreamEvent]]:
    stream = await provider.open_stream(call)
    try:
        return [events async for events in stream]
    finally:
        await stream.aclose()


def stream_chunks(fake: FakeAnthropic, call: Call) -> list[dict[str, Any]]:
    reads = run(fake, lambda p: _drain(p, call))
    return [orjson.loads(e.data) for events in reads for e in events]


def raises(fake: FakeAnthropic, call: Call, error: type[Exception], **options: Any):
    """The error `complete` (or `open_stream`, for a stream call) raised."""
    async def use(provider: AnthropicProvider) -> None:
        if call.stream:
            await _drain(provider, call)
        else:
            await provider.complete(call)
    with pytest.raises(error) as caught:
        run(fake, use, **options)
    return caught.value


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# ---------------------------------------------------------------------- request translation


def test_request_goes_to_v1_messages_with_key_and_version_headers(fake):
    complete(fake, chat())
    assert fake.last.path == "/v1/messages"
    assert fake.last.api_key == KEY
    assert fake.last.anthropic_version == "2023-06-01"
    assert "authorization" not in fake.last.headers


def test_request_names_the_upstream_model_not_the_clients_alias(fake):
    assert sent(fake)["model"] == MODEL


def test_system_and_developer_messages_become_top_level_system(fake):
    body = sent(fake, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        *USER])
    assert body["system"] == "Be brief.\n\nAnswer in English."
    assert body["messages"] == USER


def test_cache_control_on_system_parts_keeps_system_as_blocks(fake):
    marked = {"type": "text", "text": "Long context.", "cache_control": {"type": "ephemeral"}}
    body = sent(fake, messages=[{"role": "system", "content": [marked]}, *USER])
    assert body["system"] == [marked]


def test_consecutive_same_role_messages_are_merged_to_alternate(fake):
    body = sent(fake, messages=[
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "assistant", "content": "reply one"},
        {"role": "assistant", "content": "reply two"},
        {"role": "user", "content": "third"}])
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"},
                                     {"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "reply one"},
                                          {"type": "text", "text": "reply two"}]},
        {"role": "user", "content": "third"}]


def test_max_tokens_defaults_when_the_client_sets_none(fake):
    complete(fake, chat(), default_max_tokens=321)
    assert fake.last.body["max_tokens"] == 321


def test_max_completion_tokens_wins_over_max_tokens(fake):
    assert sent(fake, max_tokens=50, max_completion_tokens=70)["max_tokens"] == 70


def test_stop_string_and_list_become_stop_sequences(fake):
    assert sent(fake, stop="END")["stop_sequences"] == ["END"]
    assert sent(fake, stop=["a", "b"])["stop_sequences"] == ["a", "b"]


def test_temperature_is_clamped_to_anthropics_zero_to_one(fake):
    assert sent(fake, temperature=1.7)["temperature"] == 1
    assert sent(fake, temperature=0.3)["temperature"] == 0.3


def test_top_p_passes_and_user_becomes_metadata_user_id(fake):
    body = sent(fake, top_p=0.9, user="user-123")
    assert body["top_p"] == 0.9
    assert body["metadata"] == {"user_id": "user-123"}


def test_openai_only_fields_are_dropped(fake):
    body = sent(fake, frequency_penalty=0.5, presence_penalty=0.1, seed=7, logprobs=False,
                n=1, response_format={"type": "json_object"}, stream_options=None,
                parallel_tool_calls=True)
    assert set(body) == {"model", "max_tokens", "messages"}


def test_image_parts_become_base64_and_url_image_blocks(fake):
    body = sent(fake, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg",
                                            "detail": "high"}}]}])
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


def test_tools_become_anthropic_tools_with_input_schema(fake):
    body = sent(fake, tools=[WEATHER_TOOL])
    assert body["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                              "input_schema": WEATHER_TOOL["function"]["parameters"]}]
    assert "tool_choice" not in body  # "auto" is Anthropic's default too


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", None),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice_is_translated(fake, choice, expected):
    assert sent(fake, tools=[WEATHER_TOOL], tool_choice=choice).get("tool_choice") == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use(fake):
    body = sent(fake, tools=[WEATHER_TOOL], parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_tool_calls_and_tool_results_become_tool_use_and_tool_result_blocks(fake):
    body = sent(fake, tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "toolu_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "24C, clear"},
        {"role": "user", "content": "Which is warmer?"}])
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
             "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C, clear"},
            {"type": "text", "text": "Which is warmer?"}]}]


def test_request_anthropic_cannot_take_is_rejected_before_any_call(fake):
    error = raises(fake, chat(n=3), UpstreamRejected)
    assert (error.status, error.retryable) == (400, False)
    assert fake.calls == 0


def test_tool_call_arguments_that_are_not_json_are_rejected_before_any_call(fake):
    bad = [*USER, {"role": "assistant", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]
    error = raises(fake, chat(messages=bad), UpstreamRejected)
    assert "not valid JSON" in error.message
    assert fake.calls == 0


# ---------------------------------------------------------------------- completion


def test_completion_is_an_openai_chat_completion(fake):
    body, completion = complete(fake, chat())
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-msg_fake")
    assert body["model"] == MODEL
    assert body["choices"][0]["message"] == {"role": "assistant", "content": REPLY,
                                             "refusal": None}
    assert body["choices"][0]["finish_reason"] == completion.finish_reason == "stop"
    assert completion.text == REPLY


def test_completion_usage_counts_cache_reads_and_writes_as_prompt_tokens(fake):
    fake.script(Behaviour(cache_read_tokens=4, cache_creation_tokens=2))
    body, completion = complete(fake, chat())
    prompt = count_input_tokens(fake.last.body)  # the fake's total, cached parts included
    output = len(REPLY.split())
    assert body["usage"] == {
        "prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2}}
    assert completion.usage == Usage(input_tokens=prompt, output_tokens=output,
                                     cached_input_tokens=4, cache_write_tokens=2)


def test_completion_cut_by_max_tokens_finishes_with_length(fake):
    body, _ = complete(fake, chat(max_tokens=3))
    assert body["choices"][0]["message"]["content"] == "Echo: hello there"
    assert body["choices"][0]["finish_reason"] == "length"


def test_completion_cut_by_a_stop_sequence_finishes_with_stop(fake):
    body, _ = complete(fake, chat(stop=["world"]))
    assert body["choices"][0]["message"]["content"] == "Echo: hello there"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_completion_tool_use_becomes_tool_calls(fake):
    fake.script(Behaviour(reply="Let me check.", tool_uses=[
        ToolUse("get_weather", {"city": "Paris"}, id="toolu_a")]))
    body, completion = complete(fake, chat(tools=[WEATHER_TOOL]))
    message = body["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert message["tool_calls"] == [{"id": "toolu_a", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert body["choices"][0]["finish_reason"] == completion.finish_reason == "tool_calls"


def test_completion_with_only_tool_calls_has_null_content(fake):
    fake.script(Behaviour(tool_uses=[ToolUse("get_weather", {"city": "Rome"})]))
    body, _ = complete(fake, chat(tools=[WEATHER_TOOL]))
    assert body["choices"][0]["message"]["content"] is None


# ---------------------------------------------------------------------- streaming


def test_stream_starts_with_the_role_chunk_then_text_then_finish_then_usage(fake):
    chunks = stream_chunks(fake, chat(stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-msg_")
    assert content_of(chunks) == REPLY
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(REPLY.split())


def test_stream_sends_one_chunk_per_text_delta_and_nothing_for_pings(fake):
    chunks = stream_chunks(fake, chat(stream=True))
    # role + one per word + finish + usage: the ping and block start/stop add nothing.
    assert len(chunks) == 1 + len(REPLY.split()) + 1 + 1


def test_stream_usage_chunk_counts_cache_tokens(fake):
    fake.script(Behaviour(cache_read_tokens=5, cache_creation_tokens=1))
    usage = stream_chunks(fake, chat(stream=True))[-1]["usage"]
    prompt = count_input_tokens(fake.last.body)
    assert usage["prompt_tokens"] == prompt
    assert usage["prompt_tokens_details"] == {"cached_tokens": 5, "cache_write_tokens": 1}


def test_stream_finish_reason_is_length_when_max_tokens_cuts_it(fake):
    chunks = stream_chunks(fake, chat(stream=True, max_tokens=2))
    assert content_of(chunks) == "Echo: hello"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_stream_tool_calls_carry_id_and_name_first_then_argument_pieces(fake):
    fake.script(Behaviour(tool_uses=[ToolUse("get_weather", {"city": "Paris"}, id="toolu_p"),
                                     ToolUse("get_weather", {"city": "Rome"}, id="toolu_r")]))
    chunks = stream_chunks(fake, chat(stream=True, tools=[WEATHER_TOOL]))
    calls = [call for c in chunks if c["choices"]
             for call in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls[0] == {"index": 0, "id": "toolu_p", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert [c.get("id") for c in calls if "id" in c] == ["toolu_p", "toolu_r"]
    for index, city in ((0, "Paris"), (1, "Rome")):
        arguments = "".join(c["function"]["arguments"] for c in calls if c["index"] == index)
        assert orjson.loads(arguments) == {"city": city}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 2 * TOOL_USE_TOKENS


def test_stream_tool_call_without_arguments_gets_an_empty_object(fake):
    fake.script(Behaviour(tool_uses=[ToolUse("get_weather", {})]))
    chunks = stream_chunks(fake, chat(stream=True, tools=[WEATHER_TOOL]))
    arguments = "".join(call["function"]["arguments"] for c in chunks if c["choices"]
                        for call in c["choices"][0]["delta"].get("tool_calls") or ())
    assert arguments == "{}"


def test_stream_chunks_carry_usage_null_when_the_client_asked_for_usage(fake):
    chunks = stream_chunks(fake, chat(stream=True, stream_options={"include_usage": True}))
    assert all(c["usage"] is None for c in chunks[:-1])


def test_stream_tally_reads_the_translated_stream_like_openais(fake):
    fake.script(Behaviour(cache_read_tokens=2))
    tally = StreamTally()
    call = chat(stream=True)
    reads = run(fake, lambda p: _drain(p, call))
    shown = [orjson.loads(e.data) for events in reads for e in tally.observe(events)]
    assert tally.text == REPLY and tally.finish_reason == "stop" and tally.error is None
    assert tally.usage.output_tokens == len(REPLY.split())
    assert tally.usage.cached_input_tokens == 2
    assert all(c["choices"] for c in shown)  # the usage chunk is hidden from this client


# ---------------------------------------------------------------------- errors


def test_400_becomes_upstream_rejected_400_with_anthropics_message(fake):
    fake.script(Behaviour(status=400, error_message="max_tokens: 99999999 > 64000"))
    error = raises(fake, chat(), UpstreamRejected)
    assert (error.status, error.type, error.code) == (400, "invalid_request_error",
                                                      "invalid_request")
    assert error.message == "max_tokens: 99999999 > 64000"
    assert error.retryable is False and error.breaker_failure is False


def test_request_the_api_refuses_surfaces_as_400(fake):
    error = raises(fake, chat(messages=[{"role": "assistant", "content": "Hi"}]),
                   UpstreamRejected)
    assert error.status == 400
    assert "first message must use the \"user\" role" in error.message


def test_404_becomes_model_not_found(fake):
    fake.script(Behaviour(status=404, error_message="model: claude-nope"))
    error = raises(fake, chat(), UpstreamRejected)
    assert (error.status, error.code) == (404, "model_not_found")


def test_413_becomes_request_too_large(fake):
    fake.script(Behaviour(status=413))
    error = raises(fake, chat(), UpstreamRejected)
    assert (error.status, error.code) == (413, "request_too_large")


def test_429_keeps_retry_after_and_is_retryable(fake):
    fake.script(Behaviour(status=429, retry_after="7"))
    error = raises(fake, chat(), UpstreamRejected)
    assert (error.status, error.type, error.code) == (429, "rate_limit_error",
                                                      "rate_limit_exceeded")
    assert error.headers == {"retry-after": "7"}
    assert error.retryable is True


def test_529_overloaded_is_a_retryable_upstream_failure(fake):
    fake.script(Behaviour(status=529))
    error = raises(fake, chat(), UpstreamFailed)
    assert (error.status, error.code, error.retryable) == (502, "upstream_overloaded", True)


def test_500_is_a_retryable_upstream_failure(fake):
    fake.script(Behaviour(status=500))
    error = raises(fake, chat(), UpstreamFailed)
    assert (error.code, error.retryable) == ("upstream_server_error", True)


def test_401_is_not_retryable_and_never_echoes_the_upstream_message(fake):
    fake.script(Behaviour(status=401, error_message=f"invalid x-api-key {KEY}"))
    error = raises(fake, chat(), UpstreamFailed)
    assert (error.code, error.retryable) == ("upstream_auth_failed", False)
    assert KEY not in str(error.body()) and "x-api-key" not in error.message


def test_a_key_the_upstream_does_not_know_is_an_auth_failure(fake):
    error = raises(fake, chat(), UpstreamFailed, key="sk-ant-wrong")
    assert (error.code, error.retryable) == ("upstream_auth_failed", False)


def test_http_error_on_a_stream_is_raised_from_open_stream(fake):
    fake.script(Behaviour(status=529))
    error = raises(fake, chat(stream=True), UpstreamFailed)
    assert error.retryable is True


def test_unreachable_upstream_raises_upstream_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused

        async def use() -> None:
            provider = AnthropicProvider("anthropic", f"http://127.0.0.1:{port}", KEY, FAST)
            await provider.start()
            try:
                await provider.complete(chat())
            finally:
                await provider.aclose()
        with pytest.raises(UpstreamUnreachable):
            asyncio.run(use())


def test_upstream_that_hangs_before_answering_raises_upstream_timeout(fake):
    fake.script(Behaviour(hang=FAST.first_byte + 3))
    error = raises(fake, chat(), UpstreamTimeout)
    assert error.retryable is True


def test_stream_with_no_first_event_in_time_raises_upstream_timeout_from_open_stream(fake):
    fake.script(Behaviour(first_event_delay=FAST.first_byte + 3))
    error = raises(fake, chat(stream=True), UpstreamTimeout)
    assert error.code == "upstream_timeout"  # the first-byte timeout, not the idle one
    assert error.retryable is True


def test_stream_idle_mid_way_raises_upstream_timeout(fake):
    fake.script(Behaviour(event_delay=FAST.idle + 1.5))

    async def use(provider: AnthropicProvider) -> list[bytes]:
        stream = await provider.open_stream(chat(stream=True))
        first = await anext(stream)
        with pytest.raises(UpstreamTimeout) as caught:
            await anext(stream)
        assert caught.value.code == "upstream_idle_timeout"
        return first
    first = run(fake, use)
    assert orjson.loads(first[0].data)["choices"][0]["delta"]["role"] == "assistant"


def test_stream_dropped_mid_way_raises_stream_broken_after_partial_chunks(fake):
    fake.script(Behaviour(drop_after_deltas=3))

    async def use(provider: AnthropicProvider) -> list[dict]:
        received: list[dict] = []
        stream = await provider.open_stream(chat(stream=True))
        with pytest.raises(StreamBroken):
            async for payloads in stream:
                received.extend(orjson.loads(e.data) for e in payloads)
        return received
    received = run(fake, use)
    assert content_of(received) == "Echo: hello there"


def test_stream_ending_without_message_stop_raises_stream_broken(fake):
    fake.script(Behaviour(omit_message_stop=True))
    error = raises(fake, chat(stream=True), StreamBroken)
    assert error.retryable is False


def test_error_event_mid_stream_becomes_an_openai_error_payload(fake):
    # Spaced events: the role chunk arrives (and is handed on) before the error does.
    fake.script(Behaviour(error_event_after_deltas=2, event_delay=0.02))
    call = chat(stream=True)
    events = [e for read in run(fake, lambda p: _drain(p, call)) for e in read]
    chunks = [orjson.loads(e.data) for e in events]
    assert content_of(chunks[:-1]) == "Echo: hello"
    assert chunks[-1]["error"]["code"] == "upstream_overloaded"
    assert "Overloaded" in chunks[-1]["error"]["message"]
    tally = StreamTally()
    tally.observe(events)
    assert tally.error["code"] == "upstream_overloaded"


def test_error_event_before_anything_is_raised_from_open_stream_and_retryable(fake):
    fake.script(Behaviour(error_event_after_deltas=-1))
    error = raises(fake, chat(stream=True), UpstreamFailed)
    assert (error.code, error.retryable) == ("upstream_overloaded", True)


def test_unreadable_stream_event_is_a_broken_stream():
    translator = StreamTranslator("anthropic", MODEL)
    with pytest.raises(StreamBroken) as caught:
        translator.feed(b"{not json")
    assert caught.value.code == "bad_upstream_response"


def test_aclose_mid_stream_drops_the_upstream_call(fake):
    fake.script(Behaviour(event_delay=0.05))

    async def use(provider: AnthropicProvider) -> None:
        stream = await provider.open_stream(chat(stream=True))
        await anext(stream)
        await stream.aclose()
    run(fake, use)
    assert fake.wait_for(lambda: fake.connections_closed_by_client == 1)


# ---------------------------------------------------------------------- models, base URL


def test_list_models_returns_the_upstreams_model_ids(fake):
    assert run(fake, lambda p: p.list_models()) == fake.models


def test_list_models_follows_every_page(fake):
    async def use(provider: AnthropicProvider) -> list[str]:
        provider.models_page_size = 1
        return await provider.list_models()
    assert run(fake, use) == fake.models
    assert fake.models_calls == len(fake.models)


def test_base_url_ending_in_v1_is_accepted(fake):
    async def use() -> None:
        provider = AnthropicProvider("anthropic", fake.base_url + "/v1/", KEY, FAST)
        await provider.start()
        try:
            await provider.complete(chat())
        finally:
            await provider.aclose()
    asyncio.run(use())
    assert fake.last.path == "/v1/messages"


def test_stream_ignores_thinking_and_server_tool_blocks():
    translator = StreamTranslator("anthropic", MODEL)
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": MODEL,
                                              "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "Let me think"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "abc"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"query": "x"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2,
         "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2,
         "delta": {"type": "text_delta", "text": "Answer"}},
        {"type": "content_block_stop", "index": 2},
    ]
    chunks = [orjson.loads(e.data) for event in events
              for e in translator.feed(orjson.dumps(event))]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "Answer"}]


def test_an_error_event_quoting_the_key_does_not_pass_it_on(fake):
    fake.script(Behaviour(error_event_after_deltas=2, event_delay=0.02,
                          error_message=f"Overloaded for {KEY}"))
    text = orjson.dumps(stream_chunks(fake, chat(stream=True))).decode()
    assert "Overloaded" in text
    assert KEY not in text and KEY[-8:] not in text


def test_an_early_error_event_quoting_the_key_does_not_pass_it_on(fake):
    fake.script(Behaviour(error_event_after_deltas=-1, error_message=f"Overloaded for {KEY}"))
    error = raises(fake, chat(stream=True), UpstreamFailed)
    assert KEY not in error.message and KEY[-8:] not in error.message
