"""What the Responses door answers, and what the fake upstream serves, checked against OpenAI's
own schemas (`Response`, `ResponseStreamEvent`), for passthrough and translated targets."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.fakes.anthropic_upstream import Behaviour as AnthropicBehaviour
from tests.fakes.anthropic_upstream import ToolUse
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY
from tests.support.openai_spec import validator
from tests.support.responses_routes import WEATHER

MODELS = ["gpt-4o-mini", "local-llama", "claude"]


def _post(door, body: dict) -> httpx.Response:
    return httpx.post(door.url + "/v1/responses", content=orjson.dumps(body),
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)


def _events(text: str) -> list[dict]:
    return [orjson.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]


def _errors(schema: str, instance: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]
            for e in validator(schema).iter_errors(instance)]


@pytest.mark.parametrize("model", MODELS)
def test_json_answer_is_a_response_object(door, upstream, anthropic_upstream, model):
    answer = _post(door, {"model": model, "input": "Hi", "instructions": "Be brief.",
                             "max_output_tokens": 64})
    assert answer.status_code == 200
    assert _errors("Response", answer.json()) == []


@pytest.mark.parametrize("model", MODELS)
def test_function_call_answer_is_a_response_object(door, upstream, anthropic_upstream,
                                                   model):
    upstream.script(Behaviour(tool_call={"name": "weather", "arguments": '{"city": "Paris"}'}))
    anthropic_upstream.script(AnthropicBehaviour(tool_uses=[ToolUse("weather",
                                                                    {"city": "Paris"})]))
    answer = _post(door, {"model": model, "input": "Weather in Paris?", "tools": [WEATHER]})
    assert [item["type"] for item in answer.json()["output"]][-1] == "function_call"
    assert _errors("Response", answer.json()) == []


@pytest.mark.parametrize("model", MODELS)
def test_every_stream_event_is_a_response_stream_event(door, upstream, anthropic_upstream,
                                                       model):
    answer = _post(door, {"model": model, "input": "Hi", "stream": True})
    events = _events(answer.text)
    assert events[-1]["type"] == "response.completed"
    assert {f"{event['type']}: {error}" for event in events
            for error in _errors("ResponseStreamEvent", event)} == set()


def test_tool_call_stream_events_are_response_stream_events(door, anthropic_upstream):
    anthropic_upstream.script(AnthropicBehaviour(tool_uses=[ToolUse("weather",
                                                                    {"city": "Paris"})]))
    events = _events(_post(door, {"model": "claude", "input": "Weather?", "stream": True,
                                     "tools": [WEATHER]}).text)
    assert "response.function_call_arguments.done" in [event["type"] for event in events]
    assert {f"{event['type']}: {error}" for event in events
            for error in _errors("ResponseStreamEvent", event)} == set()


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude"])
def test_the_error_event_ending_a_broken_stream_is_a_response_error_event(
        door, upstream, anthropic_upstream, model):
    upstream.script(Behaviour(drop_after_chunks=2))
    anthropic_upstream.script(AnthropicBehaviour(drop_after_deltas=2))
    error = _events(_post(door, {"model": model, "input": "Hi", "stream": True}).text)[-1]
    assert error["type"] == "error"
    assert _errors("ResponseErrorEvent", error) == []


def test_reasoning_from_a_chat_upstream_is_a_reasoning_item_of_the_response(door, upstream):
    upstream.script(Behaviour(reasoning="First I think it through"))
    answer = _post(door, {"model": "local-llama", "input": "Hi"}).json()
    assert [item["type"] for item in answer["output"]] == ["reasoning", "message"]
    assert answer["output"][0]["content"] == [{"type": "reasoning_text",
                                               "text": "First I think it through"}]
    assert _errors("Response", answer) == []


def test_reasoning_stream_events_from_a_chat_upstream_are_response_stream_events(door,
                                                                                 upstream):
    upstream.script(Behaviour(reasoning="First I think it through"))
    events = _events(_post(door, {"model": "local-llama", "input": "Hi", "stream": True}).text)
    kinds = [event["type"] for event in events]
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    assert {f"{event['type']}: {error}" for event in events
            for error in _errors("ResponseStreamEvent", event)} == set()
