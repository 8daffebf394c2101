"""Every kind of mock answer, JSON and stream, is valid against OpenAI's own OpenAPI schemas
(CreateChatCompletionResponse, CreateChatCompletionStreamResponse), undeclared fields refused."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.support.gateway_server import CLIENT_KEY
from tests.support.openai_spec import validator

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}, "strict": True}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
    "required": ["city", "temp"], "additionalProperties": False}}}
REQUESTS = {
    "plain": {},
    "max-tokens": {"max_tokens": 3},
    "tools": {"tools": [WEATHER]},
    "tools-after-result": {"tools": [WEATHER], "messages": [
        *ASK, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}]},
    "legacy-functions": {"functions": [WEATHER["function"]]},
    "json-schema": {"response_format": SCHEMA},
    "json-object": {"response_format": {"type": "json_object"}},
    "n-3": {"n": 3},
    "n-2-tools": {"n": 2, "tools": [WEATHER]},
    "stop": {"stop": ["mock"]},
    "logprobs": {"logprobs": True, "top_logprobs": 3},
    "logprobs-tools": {"logprobs": True, "tools": [WEATHER]},
}


def _post(gateway, body: dict) -> httpx.Response:
    response = httpx.post(gateway.url + "/v1/chat/completions", timeout=15,
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "gpt-4o-mini", "messages": ASK, **body})
    assert response.status_code == 200, response.text
    return response


def _errors(name: str, instance: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(name).iter_errors(instance)]


@pytest.mark.parametrize("body", REQUESTS.values(), ids=REQUESTS.keys())
def test_json_answer_matches_create_chat_completion_response(mock_gateway, body):
    answer = _post(mock_gateway, body).json()
    assert _errors("CreateChatCompletionResponse", answer) == []


@pytest.mark.parametrize("body", REQUESTS.values(), ids=REQUESTS.keys())
def test_every_stream_chunk_matches_create_chat_completion_stream_response(mock_gateway, body):
    response = _post(mock_gateway, {**body, "stream": True,
                                    "stream_options": {"include_usage": True}})
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert {i: errs for i, c in enumerate(chunks)
            if (errs := _errors("CreateChatCompletionStreamResponse", c))} == {}


def test_a_misnamed_field_would_be_caught():
    answer = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                           "message": {"role": "assistant", "content": "hi", "refusal": None,
                                       "tool_call": []}}]}
    assert any("tool_call" in error for error in _errors("CreateChatCompletionResponse", answer))
