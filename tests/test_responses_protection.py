"""Every protection on the Responses door: the budget reserves the worst case (the whole input,
tools included, and `max_output_tokens` or the model's cap), fallback across a route, hostile
bodies refused in OpenAI's shape, never a 500."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import orjson
import pytest

from circuit.keys import create_key
from circuit.store.sqlite import SQLiteStore
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY
from tests.support.responses_routes import WEATHER

#: gpt-4o-mini's output cap (16,384 tokens at $0.60/M) alone is about $0.0098: past this limit.
LIMIT_USD = 0.005


def _key(door, limit: float = LIMIT_USD) -> str:
    store = SQLiteStore(door.db_path)
    try:
        secret = create_key(store, f"tight-{uuid.uuid4().hex[:8]}", daily_limit_usd=limit)
    finally:
        store.close()
    for _ in range(100):  # the gateway picks the key up within a second
        if httpx.get(door.url + "/v1/models", headers={"Authorization": f"Bearer {secret}"},
                     timeout=10).status_code == 200:
            return secret
        time.sleep(0.05)
    raise AssertionError("key not picked up")


def _post(door, body: dict | bytes, key: str = CLIENT_KEY,
          request_id: str | None = None) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if request_id:
        headers["x-request-id"] = request_id
    return httpx.post(door.url + "/v1/responses", content=raw, headers=headers, timeout=10)


# -- budget ------------------------------------------------------------------------------------

def test_without_max_output_tokens_the_model_cap_is_reserved_and_refused(door, upstream,
                                                                         request_id):
    answer = _post(door, {"model": "gpt-4o-mini", "input": "Hi"}, _key(door),
                   request_id)
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "quota_exceeded"
    assert upstream.calls == 0
    assert door.record(request_id)["api"] == "responses"


def test_with_a_small_max_output_tokens_the_same_request_is_served(door, upstream):
    answer = _post(door, {"model": "gpt-4o-mini", "input": "Hi", "max_output_tokens": 100},
                   _key(door))
    assert answer.status_code == 200


def test_tools_count_in_the_reserved_input(door, upstream):
    tool = {"type": "function", "name": "big", "description": "x " * 20_000,
            "parameters": {"type": "object"}}
    answer = _post(door, {"model": "gpt-4o-mini", "input": "Hi", "max_output_tokens": 100,
                             "tools": [tool]}, _key(door))
    assert answer.status_code == 429 and upstream.calls == 0


def test_instructions_count_in_the_reserved_input(door, upstream):
    answer = _post(door, {"model": "gpt-4o-mini", "input": "Hi", "max_output_tokens": 100,
                             "instructions": "y " * 20_000}, _key(door))
    assert answer.status_code == 429 and upstream.calls == 0


def test_continuing_a_stored_response_reserves_a_context_window(door, upstream):
    answer = _post(door, {"model": "gpt-4o-mini", "input": "And then?",
                             "max_output_tokens": 100, "previous_response_id": "resp_1"},
                   _key(door))
    assert answer.status_code == 429 and upstream.calls == 0


# -- fallback ----------------------------------------------------------------------------------

def test_openai_failure_falls_back_to_anthropic_translated(door, upstream,
                                                           anthropic_upstream, request_id):
    upstream.script(Behaviour(status=500))
    response = door.client().responses.create(model="gpt-or-claude", input="Hello",
                                                 extra_headers={"x-request-id": request_id})
    assert response.output_text.startswith("Echo: Hello")
    row = door.record(request_id)
    assert (row["provider"], row["upstream_api"], row["attempts"]) == (
        "anthropic", "messages", 2)


def test_openai_stream_failure_falls_back_to_anthropic_translated(door, upstream,
                                                                  anthropic_upstream,
                                                                  request_id):
    upstream.script(Behaviour(status=503))
    with door.client().responses.stream(model="gpt-or-claude", input="Hello",
                                           extra_headers={"x-request-id": request_id}) as s:
        final = s.get_final_response()
    assert final.output_text.startswith("Echo: Hello")
    assert door.record(request_id)["provider"] == "anthropic"


# -- hostile bodies ----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"model": "local-llama", "input": [{"role": "user", "content": 5}]},
    {"model": "local-llama", "input": [{"role": "user", "content": [7]}]},
    {"model": "local-llama", "input": [{"type": "function_call_output", "call_id": "c",
                                        "output": {"a": 1}}]},
    {"model": "local-llama", "input": [{"type": "computer_call", "id": "x"}]},
    {"model": "claude", "input": "Hi", "tools": [5]},
    {"model": "claude", "input": "Hi", "tool_choice": {"type": "file_search"},
     "tools": [WEATHER]},
    {"model": "claude", "input": "Hi", "text": {"format": {"type": "grammar"}}},
    {"model": "claude", "input": [{"role": "user", "content": [
        {"type": "input_image", "file_id": "file_1"}]}]},
])
def test_what_a_translated_target_cannot_take_is_an_openai_shaped_400(door, upstream,
                                                                      anthropic_upstream, body):
    answer = _post(door, body)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert upstream.calls == 0 and anthropic_upstream.calls == 0


@pytest.mark.parametrize(("limit", "code"), [
    (-1, "integer_below_min_value"), (0, "integer_below_min_value"), ("abc", "invalid_type"),
    (1.5, "invalid_type"), (True, "invalid_type")])
def test_a_max_output_tokens_no_bound_can_be_read_from_is_a_400_naming_it(door, upstream,
                                                                       limit, code):
    # A chat-only upstream would take -1 as no limit while the budget reserved nothing.
    answer = _post(door, {"model": "local-llama", "input": "Hi", "max_output_tokens": limit})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == (code, "max_output_tokens")
    assert upstream.calls == 0


@pytest.mark.parametrize(("raw", "status"), [
    (b'{"model": "claude", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
    (b'{"model": "claude", "input": "\\ud800 lone surrogate"}', 400),
    (b'{"model": "claude", "input": "Hi", "max_output_tokens": "lots"}', 400),
    (b'{"model": "claude", "input": "Hi", "instructions": [{"role": "nobody"}]}', 400),
    (b'{"model": "claude", "input": [{"role": "user", "content": "x"}], "reasoning": 5}', 200),
])
def test_odd_shapes_get_a_clear_answer_never_a_500(door, upstream, anthropic_upstream, raw,
                                                   status):
    answer = _post(door, raw)
    assert answer.status_code == status
    if status != 200:
        assert answer.json()["error"]["message"]


def test_body_over_the_limit_is_a_413_in_openai_shape(openai_gateway, upstream):
    answer = _post(openai_gateway, {"model": "gpt-4o-mini", "input": "x" * 70_000})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"


def test_sdk_raises_its_typed_error_for_a_refused_request(door, upstream):
    with pytest.raises(openai.BadRequestError):
        door.client().responses.create(model="local-llama", input="Hi",
                                          tools=[{"type": "web_search"}])


def test_a_stream_past_its_reservation_is_cut_at_the_bound(door, upstream, request_id):
    # At a model's pace (a word every 2 ms), an upstream ignoring max_output_tokens.
    upstream.script(Behaviour(reply=" ".join(["word"] * 2_000), ignore_max_tokens=True,
                              chunk_delay=0.002))
    answer = httpx.post(door.url + "/v1/responses", timeout=30, content=orjson.dumps(
        {"model": "gpt-4o-mini", "input": "Hi", "max_output_tokens": 20, "stream": True}),
        headers={"Authorization": f"Bearer {_key(door)}", "x-request-id": request_id})
    frames = answer.text.strip().split("\n\n")
    assert frames[-1].startswith("event: error\n")
    assert orjson.loads(frames[-1].split("data: ", 1)[1])["code"] == "upstream_overrun"
    deltas = [f for f in frames if f.startswith("event: response.output_text.delta")]
    assert len(deltas) <= 20 + 32, "cut at the bound, not thousands of words later"
    row = door.record(request_id)
    assert (row["status"], row["error_code"]) == ("failed", "upstream_overrun")
