"""The Responses door in front of an OpenAI upstream: passthrough, JSON, over real HTTP."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY


def _post(gateway, body: dict | bytes, request_id: str, key: str = CLIENT_KEY) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(gateway.url + "/v1/responses", content=raw,
                      headers={"Authorization": f"Bearer {key}",
                               "Content-Type": "application/json",
                               "x-request-id": request_id}, timeout=10)


def test_sdk_create_is_answered_and_recorded_with_the_upstream_usage(openai_gateway, upstream,
                                                                      request_id):
    response = openai_gateway.client().responses.create(
        model="gpt-4o-mini", input="Hello from the test", instructions="Be brief.",
        extra_headers={"x-request-id": request_id})
    assert response.output_text.startswith("Echo: Hello from the test")
    row = openai_gateway.record(request_id)
    assert (row["api"], row["upstream_api"]) == ("responses", "responses")
    assert (row["tokens_input"], row["tokens_output"]) == (
        response.usage.input_tokens, response.usage.output_tokens)
    assert row["usage_source"] == "provider" and row["status"] == "ok"
    assert row["cost_usd"] > 0 and row["finish_reason"] == "stop"
    assert upstream.last.path == "/v1/responses"


def test_request_bytes_reach_the_upstream_unchanged(openai_gateway, upstream, request_id):
    body = {"model": "gpt-4o-mini", "input": [{"role": "user", "content": "Hi"}],
            "reasoning": {"effort": "low"}, "x_vendor_field": {"nested": [1, 2.5, "three"]},
            "include": ["reasoning.encrypted_content"], "store": False}
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    assert _post(openai_gateway, raw, request_id).status_code == 200
    assert upstream.last.raw == raw


def test_response_bytes_reach_the_client_unchanged(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(headers={"x-upstream-note": "kept"}))
    answer = _post(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    body = answer.json()
    # Fields the gateway never reads are there as the upstream wrote them.
    assert body["object"] == "response" and body["truncation"] == "disabled"
    assert body["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert answer.headers["x-circuit-provider"] == "openai"


def test_provider_key_goes_upstream_never_the_client_key(openai_gateway, upstream, request_id):
    _post(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    assert upstream.last.api_key == PROVIDER_KEY


def test_cached_and_reasoning_tokens_are_read_from_the_usage(openai_gateway, upstream,
                                                             request_id):
    upstream.script(Behaviour(usage={
        "input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 256},
        "total_tokens": 1500}))
    _post(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    row = openai_gateway.record(request_id)
    assert (row["tokens_input"], row["tokens_cached"], row["tokens_output"]) == (1200, 1024, 300)


def test_missing_usage_is_counted_locally(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(send_usage=False))
    assert _post(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"},
                 request_id).status_code == 200
    row = openai_gateway.record(request_id)
    assert row["usage_source"] == "local" and row["tokens_output"] > 0


def test_truncated_response_is_recorded_as_cut_by_length(openai_gateway, upstream, request_id):
    answer = _post(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi",
                                    "max_output_tokens": 3}, request_id)
    assert answer.json()["status"] == "incomplete"
    assert openai_gateway.record(request_id)["finish_reason"] == "length"


# -- misbehaving upstream ----------------------------------------------------------------------

def test_upstream_500_is_a_502_in_openai_shape(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(status=500))
    with pytest.raises(openai.InternalServerError) as raised:
        openai_gateway.client().responses.create(model="gpt-4o-mini", input="Hi",
                                                 extra_headers={"x-request-id": request_id})
    assert raised.value.status_code == 502
    assert set(raised.value.body) >= {"message", "type", "code"}
    row = openai_gateway.record(request_id)
    assert row["status"] == "failed" and row["api"] == "responses"


def test_upstream_429_reaches_the_sdk_as_a_rate_limit_error(openai_gateway, upstream,
                                                            request_id):
    upstream.script(Behaviour(status=429, retry_after="7"))
    with pytest.raises(openai.RateLimitError) as raised:
        openai_gateway.client().responses.create(model="gpt-4o-mini", input="Hi",
                                                 extra_headers={"x-request-id": request_id})
    assert raised.value.response.headers["retry-after"] == "7"


def test_upstream_answer_that_is_not_a_response_is_a_502(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(raw_body=b'{"object": "chat.completion", "choices": []}'))
    answer = _post(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "bad_upstream_response"


# -- hostile bodies ----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "param"), [
    (b"", None),
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'{"input": "Hi"}', "model"),
    (b'{"model": 7, "input": "Hi"}', "model"),
    (b'{"model": "gpt-4o-mini"}', "input"),
    (b'{"model": "gpt-4o-mini", "input": 42}', "input"),
    (b'{"model": "gpt-4o-mini", "input": [1, 2]}', "input[0]"),
    (b'{"model": "gpt-4o-mini", "input": "Hi", "stream": "yes"}', "stream"),
    (b'{"model": "gpt-4o-mini", "input": "Hi", "tools": {"a": 1}}', "tools"),
    (b'{"model": "gpt-4o-mini", "input": "Hi", "instructions": 5}', "instructions"),
])
def test_hostile_body_is_an_openai_shaped_400_and_never_reaches_upstream(
        openai_gateway, upstream, request_id, body, param):
    answer = _post(openai_gateway, body, request_id)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error.get("param") == param
    assert upstream.calls == 0
    assert openai_gateway.record(request_id)["status"] == "rejected"


def test_unknown_key_is_a_401_in_openai_shape(openai_gateway, upstream, request_id):
    answer = _post(openai_gateway, {"model": "gpt-4o-mini", "input": "Hi"}, request_id,
                   key="sk-not-a-key")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"
    assert upstream.calls == 0


def test_a_refused_request_is_recorded_as_the_responses_doors(openai_gateway, upstream,
                                                              request_id):
    _post(openai_gateway, b'{"model": "gpt-4o-mini"}', request_id)
    assert openai_gateway.record(request_id)["api"] == "responses"


# -- stored responses (OpenAI keeps them) ------------------------------------------------------

def test_a_stored_response_is_retrieved_listed_and_deleted_through_the_gateway(openai_gateway,
                                                                               upstream):
    client = openai_gateway.client()
    made = client.responses.create(model="gpt-4o-mini", input="Keep this")
    assert client.responses.retrieve(made.id).output_text == made.output_text
    assert "Keep this" in repr(client.responses.input_items.list(made.id).data)
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    assert upstream.last.api_key == PROVIDER_KEY


def test_a_background_response_can_be_cancelled(openai_gateway, upstream):
    client = openai_gateway.client()
    made = client.responses.create(model="gpt-4o-mini", input="Long job", background=True)
    assert client.responses.cancel(made.id).status == "cancelled"


def test_retrieving_a_stored_response_is_recorded_at_no_cost(openai_gateway, upstream,
                                                             request_id):
    made = openai_gateway.client().responses.create(model="gpt-4o-mini", input="Hi")
    answer = httpx.get(f"{openai_gateway.url}/v1/responses/{made.id}", timeout=10,
                       headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                "x-request-id": request_id})
    assert answer.status_code == 200 and answer.json()["id"] == made.id
    row = openai_gateway.record(request_id)
    assert (row["api"], row["upstream_api"], row["status"]) == ("responses", "responses", "ok")
    assert not row["cost_usd"]


def test_input_tokens_are_counted_by_openai(openai_gateway, upstream):
    count = openai_gateway.client().responses.input_tokens.count(model="gpt-4o-mini",
                                                                 input="one two three")
    assert count.input_tokens == 3 + 3 + 3
