"""chunk_event and usage_from_openai: what the gateway reads of OpenAI's chat chunks and usage
objects (output text for the local count, usage it can trust)."""

from __future__ import annotations

import pytest

from circuit.providers.openai_wire import chunk_event, output_text, usage_from_openai


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
