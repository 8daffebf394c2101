"""MockProvider and its reply, called directly: the edges the gateway never lets through, and
request bodies of any shape."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuit.accounting.tokens import TokenCounter
from circuit.providers.mock import MockProvider
from circuit.providers.mock_reply import compose
from circuit.providers.mock_wire import completion_body
from circuit.wire import Call

ASK = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter.load()


def _complete(counter: TokenCounter, body: dict) -> dict:
    async def run() -> dict:
        provider = MockProvider(lambda: counter)
        await provider.start()
        raw = orjson.dumps(body)
        completion = await provider.complete(Call(body, raw, "gpt-4o-mini", False, "r"))
        return orjson.loads(completion.body)

    return asyncio.run(run())


def test_a_zero_token_limit_answers_empty_content_with_finish_length(counter):
    answer = _complete(counter, {"messages": ASK, "max_tokens": 0})
    assert answer["choices"][0]["message"]["content"] == ""
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 0


def test_a_zero_token_limit_on_a_tool_call_leaves_empty_arguments(counter):
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}}}}
    choice = _complete(counter, {"messages": ASK, "tools": [tool], "max_tokens": 0})["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == ""


def test_a_large_body_is_answered_the_same_as_a_small_one(counter):
    # Past 16 KiB the answer is made on a worker thread; it must not differ.
    padding = {"role": "system", "content": "word " * 5000}
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    small = _complete(counter, {"messages": ASK, "tools": [tool]})
    large = _complete(counter, {"messages": [padding, *ASK], "tools": [tool]})
    assert (large["choices"][0]["message"]["tool_calls"][0]["function"]
            == small["choices"][0]["message"]["tool_calls"][0]["function"])
    assert large["usage"]["prompt_tokens"] > small["usage"]["prompt_tokens"] + 4000


def test_a_schema_asking_for_a_huge_value_gets_a_capped_one(counter):
    schema = {"type": "array", "minItems": 10**9, "items": {
        "type": "array", "minItems": 10**9, "items": {"type": "string", "minLength": 10**9}}}
    body = {"messages": ASK, "response_format": {"type": "json_schema", "json_schema": {
        "name": "huge", "schema": schema}}}
    content = _complete(counter, body)["choices"][0]["message"]["content"]
    assert len(content) < 1_000_000


# What orjson can hand over from a client's body: integers within 64 bits, no NaN.
_anything = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
                         | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                         lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                         max_leaves=10)
_fields = st.fixed_dictionaries({}, optional={
    "tools": _anything | st.just([{"type": "function", "function": {"name": "f"}}]),
    "functions": _anything, "tool_choice": _anything, "function_call": _anything,
    "parallel_tool_calls": _anything, "response_format": _anything | st.just(
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
    "n": _anything, "stop": _anything, "logprobs": _anything, "top_logprobs": _anything,
    "max_tokens": _anything, "max_completion_tokens": _anything,
    "messages": st.lists(st.dictionaries(st.sampled_from(["role", "content", "tool_calls"]),
                                         _anything | st.sampled_from(["user", "tool"])),
                         max_size=3)})


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_fields)
def test_any_request_body_gets_a_reply(counter, body):
    reply = compose(body, "gpt-4o-mini", counter)
    answer = orjson.loads(completion_body(reply, "gpt-4o-mini"))
    assert len(answer["choices"]) >= 1 and answer["usage"]["completion_tokens"] >= 0
