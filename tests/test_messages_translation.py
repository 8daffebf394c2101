"""The Messages door served by a chat-completions target: the anthropic SDK against the gateway
on a real port, the fake OpenAI upstream behind it; the request translated to chat completions
(system, tools, tool results, images), the answer back to Anthropic's message and its exact
stream event sequence."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import anthropic
import httpx
import orjson
import pytest

from circuit.providers.messages_chat import message_from_chat, to_chat
from circuit.providers.messages_chat_stream import MessagesFromChat
from circuit.wire import Completion, StreamEvent, Usage
from tests.fakes.anthropic_upstream import Behaviour as AnthropicBehaviour
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI, count_prompt_tokens
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

MODEL = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello translated"}]
REPLY = "Echo: Hello translated. This is a deterministic reply from the fake upstream."
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_openai: FakeOpenAI) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("messages-chat"), PROVIDER="openai",
                           OPENAI_BASE_URL=fake_openai.base_url,
                           OPENAI_API_KEY="sk-openai-provider-0123456789",
                           CIRCUIT_RETRY_MAX_ATTEMPTS=1, CIRCUIT_IDLE_TIMEOUT=1.0,
                           CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000,
                           CIRCUIT_BREAKER_MINIMUM_CALLS=10_000).start()
    yield server
    server.stop()


def sdk(server: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=CLIENT_KEY, max_retries=0,
                               timeout=15)


def test_create_answers_an_anthropic_message_from_a_chat_completion(gateway, upstream):
    raw = sdk(gateway).messages.with_raw_response.create(model=MODEL, max_tokens=64,
                                                         messages=HELLO)
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == count_prompt_tokens(upstream.last.body["messages"])
    assert message.usage.output_tokens == len(REPLY.split())
    row = gateway.record(raw.headers["x-request-id"])
    assert (row["api"], row["upstream_api"], row["status"]) == ("messages", "chat", "ok")


def test_stream_has_anthropics_exact_event_sequence(gateway, upstream):
    with sdk(gateway).messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        kinds = [event.type for event in stream if event.type in (
            "message_start", "content_block_start", "content_block_delta",
            "content_block_stop", "message_delta", "message_stop")]
        final = stream.get_final_message()
    words = len(REPLY.split())
    assert kinds == ["message_start", "content_block_start",
                     *["content_block_delta"] * words, "content_block_stop",
                     "message_delta", "message_stop"]
    assert final.content[0].text == REPLY
    assert final.usage.output_tokens == words
    assert upstream.last.body["stream_options"] == {"include_usage": True}


def test_stream_is_recorded_with_the_chat_usage(gateway, upstream):
    with sdk(gateway).messages.with_streaming_response.create(
            model=MODEL, max_tokens=64, messages=HELLO, stream=True) as response:
        request_id = response.headers["x-request-id"]
        for _ in response.iter_lines():
            pass
    row = gateway.record(request_id)
    assert (row["upstream_api"], row["usage_source"]) == ("chat", "provider")
    assert row["tokens_output"] == len(REPLY.split())


def test_chat_stream_without_usage_is_counted_locally(gateway, upstream):
    upstream.script(Behaviour(send_usage=False))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                      json={"model": MODEL, "max_tokens": 64, "messages": HELLO,
                            "stream": True}) as response:
        raw = b"".join(response.iter_raw())
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    row = gateway.record(response.headers["x-request-id"])
    assert (row["status"], row["usage_source"]) == ("ok", "local")
    assert row["tokens_output"] > 0


def test_max_tokens_cut_is_stop_reason_max_tokens(gateway, upstream):
    message = sdk(gateway).messages.create(model=MODEL, max_tokens=3, messages=HELLO)
    assert message.stop_reason == "max_tokens"
    # OpenAI's word for it: max_tokens is deprecated, and refused by its reasoning models.
    assert upstream.last.body["max_completion_tokens"] == 3
    assert "max_tokens" not in upstream.last.body


@pytest.mark.parametrize("stream", [False, True])
def test_an_openai_reasoning_model_is_sent_max_completion_tokens(gateway, upstream, stream):
    request = {"model": "o4-mini", "max_tokens": 3, "messages": HELLO}
    if stream:
        with sdk(gateway).messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = sdk(gateway).messages.create(**request)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3
    assert upstream.last.body["max_completion_tokens"] == 3
    assert "max_tokens" not in upstream.last.body


def test_the_fake_refuses_max_tokens_for_a_reasoning_model_as_openai_does(gateway, upstream):
    # The chat door sends the client's own body as it came: OpenAI's 400 comes back.
    answer = httpx.post(gateway.url + "/v1/chat/completions",
                        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                        json={"model": "o4-mini", "max_tokens": 3, "messages": HELLO})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", "max_tokens")
    assert "Use 'max_completion_tokens' instead" in error["message"]


def test_system_tools_tool_results_and_images_reach_the_chat_upstream(gateway, upstream):
    sdk(gateway).messages.create(
        model=MODEL, max_tokens=64, system=[{"type": "text", "text": "Be brief."}],
        tools=[{"name": "read_file", "description": "Read a file", "input_schema": {
            "type": "object", "properties": {"path": {"type": "string"}}}}],
        tool_choice={"type": "any"},
        messages=[
            {"role": "user", "content": "Read a.txt"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should read it", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "read_file",
                 "input": {"path": "a.txt"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "contents"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PIXEL}},
                {"type": "text", "text": "What is in the picture?"}]}])
    sent = upstream.last.body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_1", "type": "function",
         "function": {"name": "read_file", "arguments": '{"path":"a.txt"}'}}]}
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1",
                                   "content": "contents"}
    assert sent["messages"][4]["content"][0] == {
        "type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    assert sent["tools"][0]["function"]["name"] == "read_file"
    assert sent["tool_choice"] == "required"


def test_a_document_block_is_refused_with_an_anthropic_400(gateway, upstream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway).messages.create(model=MODEL, max_tokens=16, messages=[
            {"role": "user", "content": [{"type": "document", "source": {
                "type": "text", "media_type": "text/plain", "data": "a doc"}}]}])
    assert "document" in caught.value.body["error"]["message"]
    assert upstream.calls == 0


def test_chat_upstream_429_raises_rate_limit_error(gateway, upstream):
    upstream.script(Behaviour(status=429, retry_after="4"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk(gateway).messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "4"


def test_chat_stream_dropped_mid_way_ends_with_anthropic_error_event(gateway, upstream):
    upstream.script(Behaviour(drop_after_chunks=3, chunk_delay=0.02))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                      json={"model": MODEL, "max_tokens": 64, "messages": HELLO,
                            "stream": True}) as response:
        raw = b"".join(response.iter_raw())
    assert raw.rsplit(b"\n\n", 2)[-2].startswith(b'event: error\ndata: {"type":"error"')
    row = gateway.record(response.headers["x-request-id"])
    assert row["status"] == "failed" and row["partial_text"].startswith("Echo: Hello")


def test_route_falls_back_from_anthropic_to_a_chat_target(tmp_path, fake_openai):
    fake_openai.reset()
    with FakeAnthropic() as anthropic_upstream:
        anthropic_upstream.default = AnthropicBehaviour(status=500)
        (tmp_path / "circuit.toml").write_text(f"""
provider = "anthropic"
[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic_upstream.base_url}"
api_key_env = "TEST_ANTHROPIC_KEY"
max_attempts = 1
[providers.openai]
kind = "openai"
base_url = "{fake_openai.base_url}"
api_key_env = "TEST_OPENAI_KEY"
[routes]
"claude-sonnet-4-5" = ["anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini"]
""")
        server = GatewayServer(tmp_path, TEST_ANTHROPIC_KEY="sk-ant-0123456789abcdef",
                               TEST_OPENAI_KEY="sk-openai-0123456789abcdef",
                               CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=100).start()
        try:
            raw = sdk(server).messages.with_raw_response.create(
                model="claude-sonnet-4-5", max_tokens=64, messages=HELLO)
            assert raw.parse().content[0].text == REPLY
            assert raw.parse().model == "claude-sonnet-4-5"
            row = server.record(raw.headers["x-request-id"])
            assert (row["provider"], row["upstream_api"], row["attempts"]) == (
                "openai", "chat", 2)
            assert anthropic_upstream.calls == 1 and fake_openai.calls == 1
        finally:
            server.stop()


# -- the translators alone ----------------------------------------------------------------


def _chunk(delta: dict, finish: str | None = None) -> StreamEvent:
    return StreamEvent(orjson.dumps({"id": "c1", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}]}))


class _Chat:
    def __init__(self, reads):
        self._reads = list(reads)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self._reads:
            raise StopAsyncIteration
        return self._reads.pop(0)

    async def aclose(self):
        pass


def _translated(reads) -> list[tuple[str, dict]]:
    async def run():
        return [event async for read in MessagesFromChat(_Chat(reads), "m") for event in read]

    return [(e.event.decode(), orjson.loads(e.data)) for e in asyncio.run(run())]


def test_streamed_tool_calls_become_tool_use_blocks_with_input_json_deltas():
    usage = StreamEvent(b"{}", relay=False, usage=Usage(input_tokens=9, output_tokens=4))
    events = _translated([[
        _chunk({"content": "Let me look."}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                "function": {"name": "read", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"path":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"a"}'}}]}),
        _chunk({}, "tool_calls"), usage]])
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert events[0][1]["message"]["id"] == "msg_c1"
    assert events[4][1]["content_block"] == {"type": "tool_use", "id": "call_1",
                                             "name": "read", "input": {}}
    assert events[5][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"path":'}
    assert events[8][1]["delta"]["stop_reason"] == "tool_use"
    assert events[8][1]["usage"]["output_tokens"] == 4


def test_a_chat_tool_call_answer_becomes_tool_use_content():
    body = orjson.dumps({"id": "c1", "choices": [{"index": 0, "finish_reason": "tool_calls",
                                                  "message": {"role": "assistant",
                                                              "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "read", "arguments": '{"path": "a"}'}}]}}]})
    answer = message_from_chat(Completion(body, Usage(input_tokens=5, output_tokens=2,
                                                      cached_input_tokens=2)), "claude-x")
    message = orjson.loads(answer.body)
    assert message["content"] == [{"type": "tool_use", "id": "call_1", "name": "read",
                                   "input": {"path": "a"}}]
    assert message["stop_reason"] == "tool_use" and message["model"] == "claude-x"
    assert message["usage"] == {"input_tokens": 3, "cache_creation_input_tokens": 0,
                                "cache_read_input_tokens": 2, "output_tokens": 2}


def test_a_server_tool_is_refused_rather_than_dropped():
    with pytest.raises(Exception, match="custom tools"):
        to_chat({"messages": HELLO, "max_tokens": 5,
                 "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, MODEL)


@pytest.mark.parametrize(("messages", "status"), [
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], 400),
    ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                    "content": [{"type": "text", "text": {"a": 1}}]}]}], 400),
    ([{"role": "user", "content": [{"type": "text", "text": "fine"}]}], 200),
    ([{"role": "user", "content": [{"type": "image", "source": "not an object"}]}], 400),
    ([{"role": "user", "content": [7]}], 400),
    ([{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}], 400),
])
def test_odd_blocks_for_a_chat_target_are_sent_or_refused_never_a_500(gateway, upstream,
                                                                    messages, status):
    # Odd but readable values are sent on (the upstream judges them); what cannot be
    # translated is an Anthropic-shaped 400.
    answer = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                        json={"model": MODEL, "max_tokens": 16, "messages": messages,
                              "system": [{"type": "text", "text": "Be brief."}],
                              "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                              "tool_choice": {"type": "tool"}, "metadata": "x"})
    assert answer.status_code == status, answer.text
    if status == 400:
        assert answer.json()["error"]["type"] == "invalid_request_error"


# -- thinking ------------------------------------------------------------------------------

THOUGHT = "The user says hello, so I greet them back."


@pytest.mark.parametrize(("thinking", "effort"), [
    ({"type": "enabled", "budget_tokens": 1024}, "low"),
    ({"type": "enabled", "budget_tokens": 4999}, "low"),
    ({"type": "enabled", "budget_tokens": 5000}, "medium"),
    ({"type": "enabled", "budget_tokens": 9999}, "medium"),
    ({"type": "enabled", "budget_tokens": 10_000}, "high"),
    ({"type": "enabled", "budget_tokens": 64_000}, "high"),
    ({"type": "disabled"}, None),
    ({"type": "adaptive"}, None),
    (None, None),
])
def test_a_thinking_budget_asks_for_a_reasoning_effort(thinking, effort):
    body = {"messages": HELLO, "max_tokens": 70_000}
    if thinking is not None:
        body["thinking"] = thinking
    assert to_chat(body, MODEL).get("reasoning_effort") == effort


@pytest.mark.parametrize(("thinking", "named"), [
    ({"type": "enabled", "budget_tokens": "lots"}, "budget_tokens"),
    ({"type": "enabled", "budget_tokens": 1023}, "greater than or equal to 1024"),
    ({"type": "bogus"}, "'bogus'"),
    ("enabled", "should be an object"),
    ({"type": "enabled", "budget_tokens": 2048}, "`max_tokens` must be greater"),
    ({"type": "enabled", "budget_tokens": 4096}, "`max_tokens` must be greater"),
])
def test_a_thinking_anthropic_would_refuse_is_an_anthropic_400(gateway, upstream, thinking,
                                                               named):
    # Refused, as Anthropic refuses it, rather than sent on quietly without thinking.
    answer = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                        json={"model": MODEL, "max_tokens": 2048, "messages": HELLO,
                              "thinking": thinking})
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert named in answer.json()["error"]["message"]
    assert upstream.calls == 0


def test_reasoning_content_comes_back_as_a_thinking_block_before_the_text(gateway, upstream):
    upstream.script(Behaviour(reasoning=THOUGHT))
    message = sdk(gateway).messages.create(
        model=MODEL, max_tokens=2048, messages=HELLO,
        thinking={"type": "enabled", "budget_tokens": 1024})
    assert upstream.last.body["reasoning_effort"] == "low"
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == THOUGHT and message.content[0].signature == ""
    assert message.content[1].text == REPLY
    assert message.usage.output_tokens == len(THOUGHT.split()) + len(REPLY.split())


def test_streamed_reasoning_is_a_thinking_block_with_thinking_deltas(gateway, upstream):
    upstream.script(Behaviour(reasoning=THOUGHT))
    with sdk(gateway).messages.stream(
            model=MODEL, max_tokens=16_000, messages=HELLO,
            thinking={"type": "enabled", "budget_tokens": 12_000}) as stream:
        events = [(event.type, getattr(event, "index", None),
                   getattr(getattr(event, "delta", None), "type", None)) for event in stream
                  if event.type.startswith(("content_block", "message_"))]
        final = stream.get_final_message()
    assert upstream.last.body["reasoning_effort"] == "high"
    thought, words = len(THOUGHT.split()), len(REPLY.split())
    assert events == [
        ("message_start", None, None),
        ("content_block_start", 0, None), *[("content_block_delta", 0, "thinking_delta")]
        * thought, ("content_block_stop", 0, None),
        ("content_block_start", 1, None), *[("content_block_delta", 1, "text_delta")] * words,
        ("content_block_stop", 1, None), ("message_delta", None, None),
        ("message_stop", None, None)]
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == THOUGHT and final.content[0].signature == ""
    assert final.content[1].text == REPLY
    assert final.usage.output_tokens == thought + words


def test_streamed_reasoning_without_usage_is_counted_as_output(gateway, upstream):
    upstream.script(Behaviour(reasoning=THOUGHT, reply="Hi.", send_usage=False))
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                      json={"model": MODEL, "max_tokens": 2048, "messages": HELLO,
                            "stream": True}) as response:
        b"".join(response.iter_raw())
    row = gateway.record(response.headers["x-request-id"])
    assert row["usage_source"] == "local"
    assert row["tokens_output"] >= len(THOUGHT.split())


def test_reasoning_past_the_reservation_is_cut(tmp_path, fake_openai):
    # A budget makes the gateway watch the output against what max_tokens reserved; the
    # reasoning is output, so an upstream that thinks past max_tokens is cut.
    fake_openai.reset()
    fake_openai.default = Behaviour(reasoning="hmm " * 3000, ignore_max_tokens=True,
                                    chunk_delay=0.001)
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=fake_openai.base_url,
                           OPENAI_API_KEY="sk-openai-provider-0123456789",
                           CIRCUIT_RETRY_MAX_ATTEMPTS=1, CIRCUIT_DAILY_USD_LIMIT=5).start()
    try:
        with httpx.stream("POST", server.url + "/v1/messages", timeout=15,
                          headers={"x-api-key": CLIENT_KEY},
                          json={"model": MODEL, "max_tokens": 1025, "messages": HELLO,
                                "stream": True, "thinking": {"type": "enabled",
                                                             "budget_tokens": 1024}}) as response:
            raw = b"".join(response.iter_raw())
        assert raw.rsplit(b"\n\n", 2)[-2].startswith(b"event: error\n")
        assert raw.count(b'"thinking_delta"') <= 1025 + 32, "cut at the bound"
        row = server.record(response.headers["x-request-id"])
        assert (row["status"], row["error_code"]) == ("failed", "upstream_overrun")
    finally:
        server.stop()
        fake_openai.reset()


def test_a_reasoning_chunk_between_texts_opens_blocks_in_index_order():
    events = _translated([[
        _chunk({"reasoning_content": "think"}), _chunk({"content": "say"}),
        _chunk({"reasoning": "more"}), _chunk({}, "stop")]])
    starts = [(body["index"], body["content_block"]["type"]) for name, body in events
              if name == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "thinking")]
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "",
                                             "signature": ""}


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_tool_call_is_a_tool_use_block_through_the_sdk(gateway, upstream, stream):
    upstream.script(Behaviour(tool_call={"name": "read_file", "arguments": '{"path": "a"}'}))
    request = {"model": MODEL, "max_tokens": 64, "messages": HELLO, "tools": [
        {"name": "read_file", "input_schema": {"type": "object"}}]}
    if stream:
        with sdk(gateway).messages.stream(**request) as events:
            message = events.get_final_message()
    else:
        message = sdk(gateway).messages.create(**request)
    assert [(block.type, block.name, block.input) for block in message.content] == [
        ("tool_use", "read_file", {"path": "a"})]
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 3


def test_without_upstream_usage_the_client_sees_the_local_count_the_record_bills(
        gateway, upstream):
    upstream.script(Behaviour(send_usage=False))
    raw = sdk(gateway).messages.with_raw_response.create(model=MODEL, max_tokens=64,
                                                         messages=HELLO)
    usage = raw.parse().usage
    row = gateway.record(raw.headers["x-request-id"])
    assert row["usage_source"] == "local"
    assert (usage.input_tokens, usage.output_tokens) == (row["tokens_input"],
                                                         row["tokens_output"])
    assert usage.input_tokens > 0 and usage.output_tokens > 0


def _streamed(gateway: GatewayServer) -> tuple[list[dict], str]:
    with httpx.stream("POST", gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                      json={"model": MODEL, "max_tokens": 64, "messages": HELLO,
                            "stream": True}) as response:
        events = [orjson.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ")]
    return events, response.headers["x-request-id"]


def test_a_stream_without_upstream_usage_shows_the_local_count_the_record_bills(
        gateway, upstream):
    upstream.script(Behaviour(send_usage=False))
    events, request_id = _streamed(gateway)
    start = next(e for e in events if e["type"] == "message_start")
    delta = next(e for e in events if e["type"] == "message_delta")
    row = gateway.record(request_id)
    assert row["usage_source"] == "local"
    assert start["message"]["usage"]["input_tokens"] == row["tokens_input"] > 0
    assert (delta["usage"]["input_tokens"], delta["usage"]["output_tokens"]) == (
        row["tokens_input"], row["tokens_output"])


def test_a_streams_message_start_reports_the_requests_input_tokens(gateway, upstream):
    events, request_id = _streamed(gateway)
    start = next(e for e in events if e["type"] == "message_start")
    row = gateway.record(request_id)
    assert row["usage_source"] == "provider"
    # The upstream's count arrives only at the end: message_start has the local count.
    assert start["message"]["usage"]["input_tokens"] > 0
    assert start["message"]["usage"]["output_tokens"] == 0


def test_an_image_in_a_tool_result_is_refused_with_an_anthropic_400(gateway, upstream):
    # OpenAI's tool message carries text parts only: the image would be dropped.
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway).messages.create(model=MODEL, max_tokens=16, messages=[
            {"role": "user", "content": "Look"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                               "name": "shot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": "a"},
                                                      {"type": "image", "source": {
                                                          "type": "base64",
                                                          "media_type": "image/png",
                                                          "data": PIXEL}}]}]}],
            tools=[{"name": "shot", "input_schema": {"type": "object"}}])
    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert "messages.2.content.0.content.1" in error["message"]
    assert "image" in error["message"]
    assert upstream.calls == 0


def _tool_turns(result: dict) -> list[dict]:
    return [{"role": "user", "content": "Look"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                               "name": "shot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          **result}]}]


@pytest.mark.parametrize(("request_body", "named"), [
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
     "messages.0.content.0.text"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages.0.content.0.text"),
    ({"messages": HELLO, "system": [{"type": "text", "text": None}]}, "system.0.text"),
    ({"messages": [{"role": "user", "content": [{"type": "image",
                                                 "source": {"type": "base64"}}]}]},
     "messages.0.content.0.source.media_type"),
    ({"messages": _tool_turns({"content": [{"type": "text", "text": None}]})},
     "messages.2.content.0.content.0.text"),
    ({"messages": _tool_turns({"content": {"type": "text", "text": "x"}})},
     "messages.2.content.0.content"),
    ({"messages": _tool_turns({"content": ["a string"]})}, "messages.2.content.0.content.0"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [
        {"type": "tool_use", "name": "shot", "input": {}}]}]}, "messages.1.content.0.id"),
])
def test_a_block_missing_what_anthropic_requires_is_an_anthropic_400_not_the_text_none(
        gateway, upstream, request_body, named):
    answer = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                        json={"model": MODEL, "max_tokens": 16, **request_body})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert named in error["message"]
    assert upstream.calls == 0
