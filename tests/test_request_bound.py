"""RequestBound: what each door's request can make an upstream bill, at most."""

from __future__ import annotations

import orjson
import pytest

from circuit.accounting.bound import (
    FILE_TOKENS,
    STORED_CONTEXT_TOKENS,
    chat_bound,
    embeddings_bound,
    image_tokens,
    messages_bound,
    responses_bound,
)
from circuit.accounting.tokens import TokenCounter

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter.load()


def test_n_choices_multiply_the_output_bound():
    assert chat_bound({"messages": HELLO, "n": 50, "max_tokens": 20}).output_tokens(4096) \
        == 1000


def test_the_larger_of_both_output_knobs_is_the_bound():
    bound = chat_bound({"messages": HELLO, "max_tokens": 1, "max_completion_tokens": 2000})
    assert bound.output_tokens(4096) == 2000


def test_no_output_knob_means_the_models_cap():
    assert chat_bound({"messages": HELLO}).output_tokens(16_384) == 16_384


@pytest.mark.parametrize("n", ["50", 50.0])
def test_numbers_sent_as_text_or_floats_count_as_a_lax_upstream_reads_them(n):
    assert chat_bound({"messages": HELLO, "n": n, "max_tokens": "3"}).output_tokens(9) == 150


def test_tools_and_schemas_count_as_the_bytes_of_their_json(counter):
    tools = [{"type": "function", "function": {"name": f"t{i}", "description": "d " * 500,
                                               "parameters": {"type": "object"}}}
             for i in range(20)]
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(50)}}}}
    bound = chat_bound({"messages": HELLO, "tools": tools, "response_format": schema})
    billed = counter.count_text("gpt-4o", orjson.dumps(tools).decode()) + \
        counter.count_text("gpt-4o", orjson.dumps(schema).decode())
    assert bound.text_tokens >= len(orjson.dumps(tools)) + len(orjson.dumps(schema))
    assert bound.text_tokens > billed


def test_images_count_at_their_models_worst_case_and_low_detail_less():
    parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 9000}},
             {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]
    bound = chat_bound({"messages": [{"role": "user", "content": parts}]})
    assert bound.input_tokens("gpt-4o-mini") >= 48_169 + 2_833
    assert bound.input_tokens("gpt-4o") < bound.input_tokens("gpt-4o-mini")
    assert bound.text_tokens < 100, "the base64 bytes are not counted as text"


def test_prediction_text_counts_as_output_it_may_bill():
    bound = chat_bound({"messages": HELLO, "max_tokens": 10,
                        "prediction": {"type": "content", "content": "x" * 300}})
    assert bound.output_tokens(4096) >= 310


def test_an_anthropic_request_counts_system_blocks_tools_and_documents():
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32_000,
            "system": [{"type": "text", "text": "You are Claude Code. " * 200,
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Read this"},
                {"type": "image", "source": {"type": "base64", "data": "A" * 10_000}},
                {"type": "document", "source": {"type": "base64", "data": "B" * 10_000}}]}],
            "tools": [{"name": "bash", "input_schema": {"type": "object"}}],
            "thinking": {"type": "enabled", "budget_tokens": 16_000}}
    bound = messages_bound(body)
    assert bound.text_tokens >= len("You are Claude Code. " * 200)
    assert bound.input_tokens("claude-sonnet-4-5") >= FILE_TOKENS + image_tokens(
        "claude-sonnet-4-5", False)
    assert bound.output_tokens(64_000) == 32_000, "thinking is within max_tokens"


def test_a_responses_request_counts_input_items_instructions_and_stored_context():
    body = {"model": "gpt-4o", "instructions": "Be brief. " * 100,
            "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "Describe"},
                {"type": "input_image", "image_url": "https://x/y.png"}]}],
            "max_output_tokens": 500}
    bound = responses_bound(body)
    assert bound.text_tokens >= len("Be brief. " * 100)
    assert bound.images_high == 1 and bound.output_tokens(16_384) == 500
    continued = responses_bound({**body, "previous_response_id": "resp_123"})
    assert continued.input_tokens("gpt-4o") - bound.input_tokens("gpt-4o") == \
        STORED_CONTEXT_TOKENS


def test_embeddings_count_strings_by_bytes_and_token_arrays_by_length():
    assert embeddings_bound({"input": "hello world"}).text_tokens >= 11
    assert embeddings_bound({"input": [[1, 2, 3], [4, 5]]}).text_tokens == 5
    assert embeddings_bound({"input": ["a", "b"]}).output_tokens(4096) == 0
