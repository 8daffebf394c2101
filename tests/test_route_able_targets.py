"""A target that cannot take a request by translation is left out of the route before any call:
the request goes to a later target that can (no attempt counted, nothing for the breaker);
when none can, the door's 400 names the field and the request is recorded `rejected` with no
attempt. The Responses and Messages doors, on the gateway of tests/support/responses_routes.py
(a chat-only target first, then OpenAI or Anthropic), the fake upstreams behind it."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pytest

from tests.support.gateway_server import CLIENT_KEY
from tests.support.keys import live_key

WEB_SEARCH = {"model": "chat-then-openai", "input": "Hi", "tools": [{"type": "web_search"}]}
DOCUMENT = [{"role": "user", "content": [
    {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                    "data": "a doc"}},
    {"type": "text", "text": "Summarise it"}]}]


def _responses(door, body: dict, request_id: str) -> httpx.Response:
    return httpx.post(door.url + "/v1/responses", content=orjson.dumps(body), timeout=10,
                      headers={"Authorization": f"Bearer {CLIENT_KEY}",
                               "x-request-id": request_id})


def _messages(door) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=door.url, api_key=CLIENT_KEY, max_retries=0,
                               timeout=15)


def test_a_hosted_tool_skips_the_chat_target_and_is_served_by_openai(door, upstream,
                                                                     request_id):
    answer = _responses(door, WEB_SEARCH, request_id)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-circuit-provider"] == "openai"
    assert [(r.path, r.body["model"]) for r in upstream.received] == [
        ("/v1/responses", "gpt-4o-mini")]
    row = door.record(request_id)
    assert (row["status"], row["provider"], row["upstream_api"], row["attempts"],
            row["attempt_errors"]) == ("ok", "openai", "responses", 1, None)


def test_a_hosted_tool_no_target_can_take_is_a_400_recorded_rejected(door, upstream,
                                                                     request_id):
    answer = _responses(door, {**WEB_SEARCH, "model": "local-llama"}, request_id)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", "tools[0]")
    assert upstream.calls == 0
    row = door.record(request_id)
    assert (row["status"], row["attempts"], row["attempt_errors"]) == ("rejected", 0, None)


def test_stored_state_no_target_can_take_is_still_explained(door, upstream, request_id):
    answer = _responses(door, {"model": "local-llama", "input": "Hi",
                               "previous_response_id": "resp_1"}, request_id)
    assert answer.status_code == 400
    assert "previous_response_id" in answer.json()["error"]["message"]
    assert door.record(request_id)["attempts"] == 0


def test_a_document_block_skips_the_chat_target_and_is_served_by_anthropic(
        door, upstream, anthropic_upstream):
    raw = _messages(door).messages.with_raw_response.create(
        model="chat-then-claude", max_tokens=32, messages=DOCUMENT)
    assert raw.headers["x-circuit-provider"] == "anthropic"
    assert raw.parse().content[0].text
    assert upstream.calls == 0 and anthropic_upstream.calls == 1
    assert anthropic_upstream.last.body["messages"] == DOCUMENT
    row = door.record(raw.headers["x-request-id"])
    assert (row["status"], row["upstream_api"], row["attempts"], row["attempt_errors"]) == (
        "ok", "messages", 1, None)


def test_a_document_block_no_target_can_take_is_an_anthropic_400_recorded_rejected(
        door, upstream, anthropic_upstream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        _messages(door).messages.create(model="local-llama", max_tokens=32,
                                        messages=DOCUMENT)
    assert "messages.0.content.0" in caught.value.body["error"]["message"]
    assert upstream.calls == 0 and anthropic_upstream.calls == 0
    row = door.record(caught.value.response.headers["x-request-id"])
    assert (row["status"], row["attempts"], row["attempt_errors"]) == ("rejected", 0, None)


def test_a_request_the_chat_target_can_take_is_still_sent_there_first(door, upstream):
    raw = _messages(door).messages.with_raw_response.create(
        model="chat-then-claude", max_tokens=32,
        messages=[{"role": "user", "content": "Hello"}])
    assert raw.headers["x-circuit-provider"] == "local"
    assert [(r.path, r.body["model"]) for r in upstream.received] == [
        ("/v1/chat/completions", "llama-3.1-8b")]


# -- what the Anthropic provider cannot express (it translates chat to Messages itself) ---------

def _chat(door, body: dict, request_id: str) -> httpx.Response:
    return httpx.post(door.url + "/v1/chat/completions", content=orjson.dumps(body),
                      timeout=10, headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                           "x-request-id": request_id})


TWO_CHOICES = {"messages": [{"role": "user", "content": "Hi"}], "n": 2}


def test_n_choices_skip_the_anthropic_target_and_are_served_by_the_chat_target(
        door, upstream, anthropic_upstream, request_id):
    answer = _chat(door, {**TWO_CHOICES, "model": "claude-then-chat"}, request_id)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-circuit-provider"] == "local"
    assert anthropic_upstream.calls == 0 and upstream.calls == 1
    assert upstream.last.body["n"] == 2
    row = door.record(request_id)
    assert (row["status"], row["provider"], row["attempts"], row["attempt_errors"]) == (
        "ok", "local", 1, None)


def test_n_choices_only_anthropic_could_serve_are_a_400_recorded_rejected(
        door, anthropic_upstream, request_id):
    answer = _chat(door, {**TWO_CHOICES, "model": "claude"}, request_id)
    assert answer.status_code == 400
    assert "'n'" in answer.json()["error"]["message"]
    assert anthropic_upstream.calls == 0
    row = door.record(request_id)
    assert (row["status"], row["attempts"], row["attempt_errors"]) == ("rejected", 0, None)


def test_a_json_schema_format_skips_the_anthropic_target_on_the_responses_door(
        door, upstream, anthropic_upstream, request_id):
    schema = {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}
    answer = _responses(door, {"model": "claude-then-chat", "input": "Hi",
                               "text": {"format": schema}}, request_id)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-circuit-provider"] == "local"
    assert anthropic_upstream.calls == 0
    assert door.record(request_id)["attempts"] == 1


def test_a_refusal_after_a_target_was_passed_over_names_the_target_that_could_serve(
        door, upstream, anthropic_upstream, request_id):
    # Anthropic cannot take n=2, so OpenAI would serve; the budget refuses it, and the record
    # names OpenAI (usage --by provider counts the refusal there), not the skipped target.
    secret = live_key(door, "tiny-budget", daily_limit_usd=0.000001)
    answer = httpx.post(door.url + "/v1/chat/completions", timeout=10,
                        content=orjson.dumps({**TWO_CHOICES, "model": "claude-then-gpt"}),
                        headers={"Authorization": f"Bearer {secret}",
                                 "x-request-id": request_id})
    assert answer.status_code == 429, answer.text
    row = door.record(request_id)
    assert (row["status"], row["provider"], row["upstream_model"]) == (
        "rejected", "openai", "gpt-4o-mini")
