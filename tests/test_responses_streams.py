"""Responses streams through the gateway, over real HTTP: passthrough to OpenAI, translated to
a chat-only upstream and to Anthropic, with the official SDK, httpx and aiohttp as clients."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
import openai
import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes.anthropic_upstream import Behaviour as AnthropicBehaviour
from tests.fakes.anthropic_upstream import ToolUse
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY
from tests.support.responses_routes import WEATHER

HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}


def _frames(text: str) -> list[tuple[str | None, dict]]:
    """(event name, data) of each SSE frame."""
    frames = []
    for block in text.strip().split("\n\n"):
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
        frames.append((name, data))
    return frames


def _stream(gateway, body: dict, request_id: str) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/responses", content=orjson.dumps(
        {**body, "stream": True}), headers={**HEADERS, "x-request-id": request_id}, timeout=10)


# -- passthrough -------------------------------------------------------------------------------

def test_sdk_stream_helper_gets_the_final_response_and_the_record_its_usage(
        openai_gateway, upstream, request_id):
    with openai_gateway.client().responses.stream(
            model="gpt-4o-mini", input="Hello from the test",
            extra_headers={"x-request-id": request_id}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text.startswith("Echo: Hello from the test")
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    row = openai_gateway.record(request_id)
    assert (row["api"], row["upstream_api"], row["stream"]) == ("responses", "responses", 1)
    assert row["tokens_output"] == final.usage.output_tokens
    assert row["usage_source"] == "provider" and row["status"] == "ok"


def test_stream_frames_are_relayed_as_the_upstream_named_them_with_no_done_marker(
        openai_gateway, upstream, request_id):
    answer = _stream(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    frames = _frames(answer.text)
    assert all(name == data["type"] for name, data in frames)
    assert [data["sequence_number"] for _, data in frames] == list(range(len(frames)))
    assert "[DONE]" not in answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")


def test_sdk_create_with_stream_true_yields_typed_events(openai_gateway, upstream, request_id):
    events = list(openai_gateway.client().responses.create(
        model="gpt-4o-mini", input="Hi", stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas).startswith("Echo: Hi")
    assert isinstance(events[-1], openai.types.responses.ResponseCompletedEvent)


def test_stream_dropped_mid_way_ends_with_an_error_event_and_records_the_partial_text(
        openai_gateway, upstream, request_id):
    upstream.script(Behaviour(drop_after_chunks=3))
    frames = _frames(_stream(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"},
                             request_id).text)
    name, error = frames[-1]
    assert name == "error" and error["type"] == "error" and error["message"]
    assert error["sequence_number"] == frames[-2][1]["sequence_number"] + 1
    row = openai_gateway.record(request_id)
    assert row["status"] == "failed" and row["partial_text"] == "Echo: Hi. This"


def test_stream_without_usage_is_counted_locally(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(send_usage=False))
    _stream(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    row = openai_gateway.record(request_id)
    assert row["status"] == "ok" and row["usage_source"] == "local"


def test_stream_refused_upstream_before_the_first_byte_is_an_error_answer(
        openai_gateway, upstream, request_id):
    upstream.script(Behaviour(status=500))
    with pytest.raises(openai.InternalServerError):
        openai_gateway.client().responses.create(model="gpt-4o-mini", input="Hi", stream=True)


def test_aiohttp_client_reads_the_same_stream(openai_gateway, upstream, request_id):
    async def read() -> bytes:
        async with aiohttp.ClientSession() as session, session.post(
                openai_gateway.url + "/v1/responses", headers=HEADERS,
                data=orjson.dumps({"model": "gpt-4o-mini", "input": "Hi", "stream": True})
        ) as response:
            assert response.status == 200
            return await response.read()
    frames = _frames(asyncio.run(read()).decode())
    assert frames[-1][0] == "response.completed"


# -- translated --------------------------------------------------------------------------------

def test_chat_only_upstream_stream_becomes_the_sdk_event_sequence(door, upstream,
                                                                  request_id):
    with door.client().responses.stream(
            model="local-llama", input="Hello stream",
            extra_headers={"x-request-id": request_id}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text.startswith("Echo: Hello stream")
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert final.usage.output_tokens > 0
    row = door.record(request_id)
    assert (row["upstream_api"], row["usage_source"]) == ("chat", "provider")
    assert row["tokens_output"] == final.usage.output_tokens


def test_anthropic_tool_use_streams_as_function_call_events(door,
                                                            anthropic_upstream, request_id):
    anthropic_upstream.script(AnthropicBehaviour(
        tool_uses=[ToolUse("weather", {"city": "Paris"}, id="toolu_7")]))
    with door.client().responses.stream(
            model="claude", input="Weather in Paris?", tools=[WEATHER]) as stream:
        done = [e for e in stream if e.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    assert orjson.loads(done[0].arguments) == {"city": "Paris"}
    [call] = [item for item in final.output if item.type == "function_call"]
    assert (call.call_id, call.name) == ("toolu_7", "weather")


def test_anthropic_stream_dropped_mid_way_ends_with_an_error_event(door,
                                                                   anthropic_upstream,
                                                                   request_id):
    anthropic_upstream.script(AnthropicBehaviour(drop_after_deltas=2))
    frames = _frames(_stream(door, {"model": "claude", "input": "Hi"},
                             request_id).text)
    assert frames[-1][0] == "error"
    assert frames[-1][1]["sequence_number"] == frames[-2][1]["sequence_number"] + 1
    row = door.record(request_id)
    assert row["status"] == "failed" and row["partial_text"]


def test_anthropic_overload_mid_stream_is_an_error_event_not_a_completed_response(
        door, anthropic_upstream, request_id):
    # Spaced out, so the error comes after the first events reached the client.
    anthropic_upstream.script(AnthropicBehaviour(error_event_after_deltas=2, event_delay=0.05))
    frames = _frames(_stream(door, {"model": "claude", "input": "Hi"},
                             request_id).text)
    assert frames[-1][0] == "error"
    assert "response.completed" not in [name for name, _ in frames]
    assert door.record(request_id)["status"] == "failed"


def test_stream_reaches_the_client_byte_for_byte_as_the_upstream_sent_it(
        openai_gateway, upstream, request_id):
    answer = _stream(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    assert answer.content == bytes(upstream.last.sent)


def test_stream_request_bytes_reach_the_upstream_unchanged(openai_gateway, upstream,
                                                           request_id):
    raw = orjson.dumps({"model": "gpt-4o-mini", "input": "Hi", "stream": True,
                        "stream_options": {"include_obfuscation": False}},
                       option=orjson.OPT_INDENT_2)
    httpx.post(openai_gateway.url + "/v1/responses", content=raw, headers=HEADERS, timeout=10)
    assert upstream.last.raw == raw


# -- misbehaving upstream stream ---------------------------------------------------------------

def test_unreadable_event_mid_stream_ends_with_an_error_event_after_the_ones_before_it(
        openai_gateway, upstream, request_id):
    upstream.script(Behaviour(malformed_sse=True))
    frames = _stream(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"},
                     request_id).text.strip().split("\n\n")
    assert frames[-1].startswith("event: error\n")
    error = orjson.loads(frames[-1].split("data: ", 1)[1])
    assert error["code"] == "bad_upstream_response"
    row = openai_gateway.record(request_id)
    assert row["error_code"] == "bad_upstream_response" and row["partial_text"]


def test_upstream_silent_mid_stream_ends_with_an_idle_timeout_error_event(
        openai_gateway, upstream, request_id):
    upstream.script(Behaviour(chunk_delay=1.0))  # the gateway's idle timeout here is 0.5 s
    frames = _frames(_stream(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"},
                             request_id).text)
    assert frames[-1][0] == "error"
    assert frames[-1][1]["code"] == "upstream_idle_timeout"
    assert openai_gateway.record(request_id)["status"] == "failed"


def test_json_where_a_stream_was_asked_is_a_502_before_any_event(openai_gateway, upstream,
                                                                 request_id):
    upstream.script(Behaviour(json_for_stream=True))
    answer = _stream(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_not_streaming"


def test_client_that_disconnects_midstream_cancels_upstream_and_is_recorded(
        openai_gateway, upstream, request_id):
    # idle timeout is 0.5 s on this gateway: 0.1 s between events keeps the stream alive.
    upstream.script(Behaviour(chunk_delay=0.1, reply=" ".join(["word"] * 40)))
    with httpx.stream("POST", openai_gateway.url + "/v1/responses",
                      json={"model": "gpt-4o-mini", "input": "Hi", "stream": True},
                      headers={**HEADERS, "x-request-id": request_id}) as response:
        deltas = 0
        for line in response.iter_lines():
            deltas += line == "event: response.output_text.delta"
            if deltas == 3:
                break
    assert upstream.wait_for(lambda: upstream.connections_closed_by_client == 1, timeout=3)
    row = openai_gateway.record(request_id)
    assert row["status"] == "client_disconnected"
    assert row["partial_text"].startswith("word")
    assert row["tokens_output"] > 0 and row["usage_source"] == "local"


def test_upstream_error_event_is_relayed_as_sent_with_the_provider_key_cut_out(
        openai_gateway, upstream, request_id):
    upstream.script(Behaviour(error_event_after_chunks=2,
                              error_message=f"upstream trouble for key {PROVIDER_KEY}"))
    answer = _stream(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    name, error = _frames(answer.text)[-1]
    assert (name, error["type"], error["code"]) == ("error", "error", "server_error")
    assert PROVIDER_KEY not in answer.text and PROVIDER_KEY[:12] not in answer.text
    assert "[redacted]" in error["message"]
    row = openai_gateway.record(request_id)
    assert (row["status"], row["error_code"]) == ("failed", "server_error")
    assert PROVIDER_KEY not in (row["error_message"] or "")
    assert row["partial_text"] == "Echo: Hi."
