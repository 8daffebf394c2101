"""Responses ⇄ chat completions, as pure functions: requests, answers and streams."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from circuit.errors import InvalidRequest, StreamBroken, UpstreamFailed
from circuit.providers.responses_chat import chat_request, response_from_chat, responses_usage
from circuit.providers.responses_chat_stream import ResponsesWriter
from circuit.providers.responses_wire import ResponsesEvents, ResponsesReader, usage_from_responses
from circuit.wire import StreamEvent, Usage

WEATHER = {"type": "function", "name": "weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


# -- request ----------------------------------------------------------------------------------

def test_string_input_and_instructions_become_system_and_user_messages():
    chat = chat_request({"model": "m", "input": "Hi", "instructions": "Be brief."})
    assert chat["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}]


def test_message_items_keep_their_roles_and_text_parts():
    chat = chat_request({"model": "m", "input": [
        {"role": "developer", "content": "Rules"},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Look"},
                     {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]}]})
    assert chat["messages"] == [
        {"role": "developer", "content": "Rules"},
        {"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}}]},
        {"role": "assistant", "content": "A cat."}]


def test_function_calls_and_outputs_become_tool_calls_and_tool_messages():
    chat = chat_request({"model": "m", "input": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "function_call", "call_id": "c1", "name": "weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "weather",
         "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": "rain"}]})
    assistant, first, second = chat["messages"][1:]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["tool_calls"][0]["function"] == {"name": "weather",
                                                      "arguments": '{"city": "Paris"}'}
    assert first == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert second["tool_call_id"] == "c2"


def test_reasoning_items_of_an_earlier_turn_are_dropped():
    chat = chat_request({"model": "m", "input": [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"role": "user", "content": "Hi"}]})
    assert chat["messages"] == [{"role": "user", "content": "Hi"}]


def test_function_tools_tool_choice_and_output_limit_are_translated():
    chat = chat_request({"model": "m", "input": "Hi", "tools": [WEATHER],
                         "tool_choice": {"type": "function", "name": "weather"},
                         "max_output_tokens": 50, "temperature": 0.2,
                         "text": {"format": {"type": "json_schema", "name": "w",
                                             "schema": {"type": "object"}}}})
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "weather", "description": "Weather in a city",
        "parameters": WEATHER["parameters"]}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert chat["max_tokens"] == 50 and chat["temperature"] == 0.2
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "w", "schema": {"type": "object"}}}


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0]"),
    ({"input": [{"type": "function_call", "name": "x"}]}, "input[0]"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0]"),
    ({"input": []}, "input"),
])
def test_what_chat_cannot_express_is_refused_naming_the_field(body, param):
    with pytest.raises(InvalidRequest) as raised:
        chat_request({"model": "m", **body})
    assert raised.value.status == 400 and raised.value.param == param


# -- answer -----------------------------------------------------------------------------------

def _completion(message: dict, finish: str = "stop") -> dict:
    return {"id": "chatcmpl-abc", "object": "chat.completion", "created": 1700000000,
            "model": "upstream-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}


def test_text_answer_becomes_a_message_item_with_usage():
    usage = Usage(input_tokens=10, output_tokens=4, cached_input_tokens=2)
    response = response_from_chat(_completion({"role": "assistant", "content": "Hello"}),
                                  {"model": "m", "instructions": "Be brief."}, usage)
    assert response["object"] == "response" and response["status"] == "completed"
    assert response["id"] == "resp_abc" and response["instructions"] == "Be brief."
    [item] = response["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["content"][0] == {"type": "output_text", "text": "Hello", "annotations": [],
                                  "logprobs": []}
    assert response["usage"] == {"input_tokens": 10,
                                 "input_tokens_details": {"cached_tokens": 2,
                                                          "cache_write_tokens": 0},
                                 "output_tokens": 4,
                                 "output_tokens_details": {"reasoning_tokens": 0},
                                 "total_tokens": 14}
    assert "store" not in response  # Circuit keeps no responses


def test_tool_calls_become_function_call_items():
    response = response_from_chat(_completion({"role": "assistant", "content": None,
                                               "tool_calls": [{"id": "call_1", "type": "function",
                                                               "function": {"name": "weather",
                                                                            "arguments": "{}"}}]},
                                              "tool_calls"), {"model": "m"}, None)
    [item] = response["output"]
    assert (item["type"], item["call_id"], item["name"], item["arguments"]) == (
        "function_call", "call_1", "weather", "{}")


def test_answer_cut_by_length_is_incomplete_for_max_output_tokens():
    response = response_from_chat(_completion({"role": "assistant", "content": "Hel"},
                                              "length"), {"model": "m"}, None)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def test_responses_usage_round_trips_through_the_reader():
    usage = Usage(input_tokens=100, output_tokens=40, cached_input_tokens=64,
                  reasoning_tokens=30)
    assert usage_from_responses(responses_usage(usage)) == usage


@pytest.mark.parametrize("usage", [None, {}, {"input_tokens": -1, "output_tokens": 2},
                                   {"input_tokens": "9", "output_tokens": 2},
                                   {"input_tokens": True, "output_tokens": 2}])
def test_absent_or_implausible_usage_reads_as_none(usage):
    assert usage_from_responses(usage) is None


def test_reader_takes_the_text_of_messages_and_function_calls():
    body = orjson.dumps({"output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]},
        {"type": "function_call", "name": "f", "arguments": "{}"}], "status": "completed"})
    completion = ResponsesReader("openai").completion(body)
    assert completion.text == "thinkHif{}" and completion.body == body
    assert completion.finish_reason == "tool_calls"


# -- passthrough stream -----------------------------------------------------------------------

def test_passthrough_events_read_deltas_and_the_terminal_usage_only():
    events = ResponsesEvents("openai")
    created = events.feed(b'{"type":"response.created","sequence_number":0,"response":{}}')
    delta = events.feed(b'{"type":"response.output_text.delta","sequence_number":1,'
                        b'"delta":"Hel"}')
    done = events.feed(b'{"type":"response.completed","sequence_number":2,"response":'
                       b'{"status":"completed","output":[],"usage":{"input_tokens":3,'
                       b'"output_tokens":1}}}')
    assert created[0].text == "" and created[0].usage is None
    assert delta[0].text == "Hel" and delta[0].outputs == 1
    assert done[0].usage == Usage(input_tokens=3, output_tokens=1) and events.done


def test_passthrough_events_that_echo_are_relayed_unread():
    # Not JSON at all: only a type that needs reading would notice.
    [event] = ResponsesEvents("openai").feed(b'{"type":"response.in_progress", garbage')
    assert event.data.endswith(b"garbage") and event.error is None


def test_passthrough_error_and_failed_events_end_the_stream_as_failed():
    events = ResponsesEvents("openai")
    [error] = events.feed(b'{"type":"error","sequence_number":4,"code":"server_error",'
                          b'"message":"boom","param":null}')
    assert events.failed and error.error["code"] == "server_error"
    failed = ResponsesEvents("openai")
    [event] = failed.feed(b'{"type":"response.failed","sequence_number":5,"response":'
                          b'{"status":"failed","error":{"code":"server_error","message":"x"}}}')
    assert failed.failed and event.error["message"] == "x"


# -- translated stream ------------------------------------------------------------------------

def _chunk(delta: dict, finish: str | None = None, **event) -> StreamEvent:
    data = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    return StreamEvent(data, **event)


def _types(events: list[StreamEvent]) -> list[str]:
    return [orjson.loads(e.data)["type"] for e in events]


def test_text_stream_is_the_sdk_event_sequence_numbered_from_zero():
    writer = ResponsesWriter({"model": "m"}, "up")
    events = writer.feed([_chunk({"role": "assistant", "content": ""})])
    events += writer.feed([_chunk({"content": "Hel"}, text="Hel"), _chunk({"content": "lo"})])
    events += writer.feed([_chunk({}, "stop", finish_reason="stop"),
                           StreamEvent(b'{"choices":[]}', relay=False,
                                       usage=Usage(input_tokens=5, output_tokens=2))])
    events += writer.finish()
    assert _types(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    parsed = [orjson.loads(e.data) for e in events]
    assert [p["sequence_number"] for p in parsed] == list(range(len(events)))
    assert parsed[6]["text"] == "Hello"
    completed = parsed[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "Hello"
    assert completed["usage"]["input_tokens"] == 5
    assert events[-1].usage == Usage(input_tokens=5, output_tokens=2)
    assert "".join(e.text for e in events) == "Hello"


def test_tool_call_stream_becomes_function_call_events():
    writer = ResponsesWriter({"model": "m"}, "up")
    events = writer.feed([_chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                                  "function": {"name": "weather",
                                                               "arguments": ""}}]}),
                          _chunk({"tool_calls": [{"index": 0,
                                                  "function": {"arguments": '{"city":'}}]}),
                          _chunk({"tool_calls": [{"index": 0,
                                                  "function": {"arguments": '"Paris"}'}}]}),
                          _chunk({}, "tool_calls", finish_reason="tool_calls")])
    events += writer.finish()
    assert _types(events)[2:] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    done = orjson.loads(events[-3].data)
    assert (done["name"], done["arguments"]) == ("weather", '{"city":"Paris"}')
    item = orjson.loads(events[-1].data)["response"]["output"][0]
    assert (item["type"], item["call_id"], item["status"]) == ("function_call", "call_9",
                                                               "completed")


def test_stream_cut_by_length_ends_with_response_incomplete():
    writer = ResponsesWriter({"model": "m", "max_output_tokens": 1}, "up")
    writer.feed([_chunk({"content": "Hel"}), _chunk({}, "length", finish_reason="length")])
    terminal = orjson.loads(writer.finish()[-1].data)
    assert terminal["type"] == "response.incomplete"
    assert terminal["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_an_upstream_error_chunk_becomes_an_error_event():
    writer = ResponsesWriter({"model": "m"}, "up")
    events = writer.feed([StreamEvent(b'{"error":{}}', error={
        "message": "overloaded", "type": "upstream_error", "code": "upstream_overloaded"})])
    error = orjson.loads(events[-1].data)
    assert error == {"type": "error", "sequence_number": 2, "code": "upstream_overloaded",
                     "message": "overloaded", "param": None}
    assert events[-1].error is not None and writer.sequence == 3


def test_parallel_tool_calls_goes_to_chat_only_with_tools():
    # Chat completions refuses parallel_tool_calls on a request without tools.
    assert "parallel_tool_calls" not in chat_request(
        {"model": "m", "input": "Hi", "parallel_tool_calls": False})
    assert chat_request({"model": "m", "input": "Hi", "tools": [WEATHER],
                         "parallel_tool_calls": False})["parallel_tool_calls"] is False


def test_openai_only_fields_are_not_sent_to_chat_servers():
    chat = chat_request({"model": "m", "input": "Hi", "metadata": {"a": "b"},
                         "prompt_cache_key": "k", "include": ["reasoning.encrypted_content"],
                         "store": False, "truncation": "auto"})
    assert set(chat) == {"model", "messages"}


def test_tool_choice_without_tools_is_not_sent_to_chat():
    # The Agents SDK sends tool_choice "auto" with no tools; chat completions would refuse it.
    assert "tool_choice" not in chat_request({"model": "m", "input": "Hi", "tools": [],
                                              "tool_choice": "auto"})


def test_an_agents_sdk_shaped_request_translates():
    chat = chat_request({"model": "m", "instructions": "Be brief.", "input": [
        {"content": "Hello", "role": "user"}], "include": [], "tools": [], "top_p": None,
        "temperature": None, "max_output_tokens": None, "parallel_tool_calls": None,
        "reasoning": None, "text": None, "truncation": None, "store": None, "stream": False})
    assert chat == {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Hello"}]}


# -- namespaces (Codex groups its sub-agent tools in one) ---------------------------------------

AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents",
          "tools": [{"type": "function", "name": "close_agent", "strict": False,
                     "parameters": {"type": "object", "properties": {}}}]}


def test_namespace_functions_go_to_chat_under_a_joined_name():
    chat = chat_request({"model": "m", "input": "Hi", "tools": [AGENTS, WEATHER]})
    assert [t["function"]["name"] for t in chat["tools"]] == ["multi_agent_v1__close_agent",
                                                              "weather"]


def test_a_namespaced_call_comes_back_with_its_namespace_and_goes_out_joined():
    completion = _completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "multi_agent_v1__close_agent", "arguments": "{}"}}]},
        "tool_calls")
    [item] = response_from_chat(completion, {"model": "m", "tools": [AGENTS]}, None)["output"]
    assert (item["namespace"], item["name"]) == ("multi_agent_v1", "close_agent")
    chat = chat_request({"model": "m", "tools": [AGENTS], "input": [
        {"role": "user", "content": "Close it"},
        {"type": "function_call", "call_id": "call_1", **{k: item[k] for k in (
            "namespace", "name", "arguments")}}]})
    assert chat["messages"][1]["tool_calls"][0]["function"]["name"] == \
        "multi_agent_v1__close_agent"


def test_a_joined_name_of_an_unknown_namespace_is_kept_whole():
    completion = _completion({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "my__tool", "arguments": "{}"}}]})
    [item] = response_from_chat(completion, {"model": "m"}, None)["output"]
    assert item["name"] == "my__tool" and "namespace" not in item


def test_a_streamed_namespaced_call_carries_its_namespace():
    writer = ResponsesWriter({"model": "m", "tools": [AGENTS]}, "up")
    events = writer.feed([_chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {
        "name": "multi_agent_v1__close_agent", "arguments": "{}"}}]})]) + writer.finish()
    added = orjson.loads(events[2].data)["item"]
    done = orjson.loads(events[-1].data)["response"]["output"][0]
    assert (added["namespace"], added["name"]) == ("multi_agent_v1", "close_agent")
    assert done["namespace"] == "multi_agent_v1"


# -- whatever the shape ------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53)
                    | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["type", "role", "content", "text", "name", "call_id", "arguments",
                         "output", "tools", "format", "image_url", "namespace", "index",
                         "function", "id", "delta", "tool_calls", "choices"]), inner,
                        max_size=5), max_leaves=20)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["input", "instructions", "tools", "tool_choice",
                                        "text", "reasoning", "max_output_tokens", "user",
                                        "parallel_tool_calls"]), JSON, max_size=6))
@example({"tools": 5})  # truthy and not a list: was a TypeError (a 500), seen once in CI
def test_any_request_translates_or_is_refused_with_a_400(body):
    try:
        chat_request({"model": "m", **body})
    except InvalidRequest as refused:
        assert refused.status == 400 and refused.message


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(JSON, min_size=1, max_size=4))
@example([{"choices": [{"delta": {"tool_calls": [{"index": []}]}}]}])  # unhashable index
@example([{"choices": 5}])
def test_any_chunk_translates_or_breaks_the_stream_cleanly(chunks):
    writer = ResponsesWriter({"model": "m"}, "up")
    try:
        writer.feed([StreamEvent(orjson.dumps(chunk)) for chunk in chunks])
        writer.finish()
    except StreamBroken as broken:
        assert broken.code == "bad_upstream_response"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["output", "status", "usage", "incomplete_details",
                                        "type", "response"]), JSON, max_size=5))
@example({"output": 5, "status": "completed"})
def test_any_upstream_response_is_read_or_refused_as_unreadable(response):
    try:
        ResponsesReader("openai").completion(orjson.dumps(response))
    except UpstreamFailed as failed:
        assert failed.code == "bad_upstream_response"
    events = ResponsesEvents("openai")
    for kind in ("response.completed", "response.output_text.delta", "error"):
        try:
            events.feed(orjson.dumps({**response, "type": kind}), kind.encode())
        except StreamBroken as broken:
            assert broken.code == "bad_upstream_response"
