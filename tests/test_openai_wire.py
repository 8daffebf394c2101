"""chunk_event, OpenAIEvents and usage_from_openai: what the gateway reads of OpenAI's chat chunks and usage
objects (output text for the local count, usage it can trust)."""

from __future__ import annotations

import orjson
import pytest

from circuit.errors import StreamBroken
from circuit.providers.openai_wire import OpenAIEvents, chunk_event, output_text, usage_from_openai
from circuit.providers.sse import SSEEvent
from circuit.providers.upstream_errors import redact


def delta_text(delta: dict) -> tuple[str, int]:
    event = chunk_event(b"", {"choices": [{"index": 0, "delta": delta}]}, False)
    return event.text, event.outputs


@pytest.mark.parametrize("delta, text", [
    ({"content": "x"}, "x"),
    ({"role": "assistant", "content": "x"}, "x"),
    ({"content": "x", "tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]},
     "xf{}"),
    ({"content": "x", "reasoning_content": "r"}, "rx"),
    ({"role": "assistant", "content": "x", "reasoning": "r"}, "rx"),
])
def test_a_delta_counts_its_text_its_reasoning_and_its_tool_calls(delta, text):
    assert delta_text(delta) == (text, 1)


def test_a_streamed_refusal_is_counted_as_output_as_a_json_one_is():
    # A JSON answer's refusal is output (output_text); the same refusal streamed must be too,
    # or a stream without usage is billed nothing for it.
    assert output_text({"content": None, "refusal": "I can't help"}) == "I can't help"
    assert delta_text({"content": None, "refusal": "I can't help"}) == ("I can't help", 1)
    assert delta_text({"content": "x", "refusal": "no"}) == ("xno", 1)


def test_a_streamed_legacy_function_call_is_counted_as_output_as_a_json_one_is():
    delta = {"function_call": {"name": "lookup", "arguments": "{\"q\":1}"}}
    assert delta_text(delta) == (output_text(delta), 1) == ("lookup{\"q\":1}", 1)


def test_an_empty_delta_has_no_output():
    assert delta_text({"role": "assistant", "content": ""}) == ("", 0)
    assert delta_text({"content": None}) == ("", 0)


@pytest.mark.parametrize("count", [True, 1.0, -1, 10**30, "5", [1]])
def test_a_wild_count_gives_no_usage(count):
    assert usage_from_openai({"prompt_tokens": count, "completion_tokens": 3}) is None
    assert usage_from_openai({"prompt_tokens": 3, "completion_tokens": 2,
                              "prompt_tokens_details": {"cached_tokens": count}}) is None
    assert usage_from_openai({"prompt_tokens": 3, "completion_tokens": 2,
                              "completion_tokens_details": {"reasoning_tokens": count}}) is None


def test_details_that_are_not_objects_give_no_usage():
    assert usage_from_openai({"prompt_tokens": 3, "completion_tokens": 2,
                              "prompt_tokens_details": [1]}) is None


CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": "lo \u00e9"}, "logprobs": None}]},
    {"choices": [{"index": 0, "delta": {"content": "x", "reasoning_content": "r"}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
        "name": "f", "arguments": "{}"}}]}}]},
    {"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {
        "content": "b"}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [{"index": 0, "delta": {"content": "u"}}], "usage": {
        "prompt_tokens": 3, "completion_tokens": 2}},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    {"choices": [{"index": 0, "delta": {"content": "t"}}], "usage": None},
]


def _read(transform: OpenAIEvents, *datas: bytes) -> list:
    out: list = []
    transform.feed_read([SSEEvent(data) for data in datas], out)
    return out


@pytest.mark.parametrize("chunk", CHUNKS)
def test_a_read_gives_each_chunk_the_event_chunk_event_gives_it(chunk):
    data = orjson.dumps(chunk)
    for forward_usage in (False, True):
        assert _read(OpenAIEvents(forward_usage), data) == \
            [chunk_event(data, chunk, forward_usage)]


def test_a_read_ends_at_done_and_reads_nothing_after_it():
    transform = OpenAIEvents(False)
    out = _read(transform, orjson.dumps(CHUNKS[1]), b"[DONE]", orjson.dumps(CHUNKS[2]))
    assert [e.text for e in out] == ["Hel"] and transform.done


def test_a_read_ends_at_an_error_event_and_fails_the_stream():
    transform = OpenAIEvents(False)
    out = _read(transform, orjson.dumps(CHUNKS[1]), b'{"error": {"message": "overloaded"}}',
                orjson.dumps(CHUNKS[2]))
    assert [e.error is not None for e in out] == [False, True]
    assert transform.failed and not transform.done


def test_an_unreadable_event_leaves_the_events_read_before_it():
    out: list = []
    with pytest.raises(StreamBroken):
        OpenAIEvents(False).feed_read([SSEEvent(orjson.dumps(CHUNKS[1])), SSEEvent(b"{nope")],
                                      out)
    assert [e.text for e in out] == ["Hel"]


def test_a_text_delta_quoting_the_key_is_relayed_redacted():
    key = "sk-upstream-0123456789abcdef"
    data = orjson.dumps({"choices": [{"index": 0, "delta": {"content": f"key {key}"}}]})
    event, = _read(OpenAIEvents(False, key), data)
    assert key[:8].encode() not in event.data and key[-8:].encode() not in event.data
    assert key[:8] not in event.text


@pytest.mark.parametrize("quoted", [slice(5, 20), slice(0, 8), slice(11, 30), slice(None)],
                         ids=["middle", "head", "tail", "whole"])
def test_a_quoted_run_of_the_key_is_redacted_whole_not_a_window_at_a_time(quoted):
    key = "sk-upSECRETkey-7f3a9c2e51d84b60aa19"
    assert redact(f'"param": "{key[quoted]}"', key) == '"param": "[redacted]"'
