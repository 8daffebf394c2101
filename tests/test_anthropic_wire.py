"""MessagesEvents and MessagesReader: what the Messages passthrough reads from Anthropic's
events as they pass (usage, output text, the end, an error), leaving their bytes as they are."""

from __future__ import annotations

import orjson
import pytest

from circuit.errors import StreamBroken, UpstreamFailed
from circuit.providers.anthropic_wire import MessagesEvents, MessagesReader
from circuit.wire import Usage

KEY = "sk-ant-api03-0123456789abcdefghij"


def feed(events: MessagesEvents, name: str, body: dict) -> list:
    return events.feed(orjson.dumps({"type": name, **body}), name.encode())


def start(events: MessagesEvents) -> None:
    feed(events, "message_start", {"message": {"id": "msg_1", "usage": {
        "input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2,
        "output_tokens": 1}}})


def test_each_event_keeps_its_name_and_bytes():
    data = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}'
    (event,) = MessagesEvents().feed(data, b"content_block_delta")
    assert (event.data, event.event, event.text, event.outputs) == (
        data, b"content_block_delta", "Hi", 1)


def test_ping_passes_unread():
    (event,) = MessagesEvents().feed(b"not json at all", b"ping")
    assert event.data == b"not json at all" and event.event == b"ping"


def test_thinking_and_tool_input_count_as_output():
    events = MessagesEvents()
    texts = [e.text for body in (
        {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me think"}},
        {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"path"'}},
        {"index": 0, "delta": {"type": "signature_delta", "signature": "abc"}})
        for e in feed(events, "content_block_delta", body)]
    assert texts == ["Let me think", '{"path"', ""]
    (tool,) = feed(events, "content_block_start", {"index": 1, "content_block": {
        "type": "tool_use", "id": "t1", "name": "read_file", "input": {}}})
    assert tool.text == "read_file"


def test_usage_comes_at_message_stop_from_start_and_delta():
    events = MessagesEvents()
    start(events)
    (delta,) = feed(events, "message_delta", {"delta": {"stop_reason": "tool_use"},
                                              "usage": {"output_tokens": 42}})
    assert delta.finish_reason == "tool_use" and delta.usage is None
    (stop,) = feed(events, "message_stop", {})
    assert events.done
    assert stop.usage == Usage(input_tokens=17, output_tokens=42, cached_input_tokens=5,
                               cache_write_tokens=2)


def test_no_output_count_in_message_delta_means_no_usage():
    # message_start's output_tokens (1) would undercount: the gateway counts instead.
    events = MessagesEvents()
    start(events)
    feed(events, "message_delta", {"delta": {"stop_reason": "end_turn"}})
    (stop,) = feed(events, "message_stop", {})
    assert stop.usage is None


def test_an_error_event_is_kept_redacted_and_ends_the_stream():
    events = MessagesEvents("anthropic", KEY)
    (event,) = feed(events, "error", {"error": {"type": "overloaded_error",
                                                "message": f"key {KEY} overloaded"}})
    assert events.failed and events.error["type"] == "overloaded_error"
    assert KEY.encode() not in event.data and KEY not in str(events.error)
    assert event.error["code"] == "upstream_overloaded"


def test_an_unreadable_event_breaks_the_stream():
    with pytest.raises(StreamBroken):
        MessagesEvents().feed(b"{not json", b"content_block_delta")


def test_a_whole_message_is_read_for_usage_and_text_and_kept_as_sent():
    body = orjson.dumps({"id": "msg_1", "type": "message", "stop_reason": "end_turn",
                         "content": [{"type": "thinking", "thinking": "hm"},
                                     {"type": "text", "text": "Hello"},
                                     {"type": "tool_use", "name": "f", "input": {"a": 1}}],
                         "usage": {"input_tokens": 3, "output_tokens": 9}})
    answer = MessagesReader().completion(body)
    assert answer.body is body
    assert answer.text == 'hmHellof{"a":1}'
    assert answer.finish_reason == "end_turn"
    assert answer.usage == Usage(input_tokens=3, output_tokens=9)


def test_an_unreadable_message_is_an_upstream_failure():
    with pytest.raises(UpstreamFailed):
        MessagesReader().completion(b"<html>")
