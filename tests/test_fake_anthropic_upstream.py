"""Tests OF the fake Anthropic upstream, on the raw wire, so the provider's tests can trust it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.anthropic_upstream import Behaviour, FakeAnthropic, ToolUse

HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
BODY = {"model": "claude-haiku-4-5", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi there"}]}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> FakeAnthropic:
    fake_server.reset()
    return fake_server


def post(fake: FakeAnthropic, body: dict[str, Any], headers: dict[str, str] = HEADERS
         ) -> httpx.Response:
    return httpx.post(fake.base_url + "/v1/messages", content=orjson.dumps(body),
                      headers={"content-type": "application/json", **headers}, timeout=5)


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["type"] == "error" and body["request_id"]
    return response.status_code, body["error"]["type"], body["error"]["message"]


def test_missing_api_key_is_401_authentication_error(fake):
    status, kind, _ = refusal(post(fake, BODY, {"anthropic-version": "2023-06-01"}))
    assert (status, kind) == (401, "authentication_error")


def test_missing_anthropic_version_is_400(fake):
    status, _, message = refusal(post(fake, BODY, {"x-api-key": "k"}))
    assert (status, message) == (400, "anthropic-version: header is required")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"max_tokens": None}, "max_tokens: Field required"),
    ({"n": 1}, "n: Extra inputs are not permitted"),
    ({"temperature": 1.5}, "temperature: range: 0..1"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "first message must use"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     "roles must alternate"),
    ({"messages": [{"role": "system", "content": "a"}]}, 'Unexpected role "system"'),
    ({"messages": [{"role": "user", "content": ""}]}, "non-empty content"),
])
def test_requests_the_real_api_refuses_are_400_and_consume_no_behaviour(fake, change, fragment):
    fake.script(Behaviour(status=500))
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    status, kind, message = refusal(post(fake, body))
    assert (status, kind) == (400, "invalid_request_error") and fragment in message
    assert fake.pending == 1


def test_tool_use_without_a_tool_result_next_is_refused(fake):
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    messages = [{"role": "user", "content": "go"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
                {"role": "user", "content": "and?"}]
    _, _, message = refusal(post(fake, {**BODY, "tools": tools, "messages": messages}))
    assert "without `tool_result` blocks immediately after: toolu_1" in message


def test_error_behaviour_has_anthropics_shape_and_retry_after(fake):
    fake.script(Behaviour(status=429, retry_after="3"))
    response = post(fake, BODY)
    assert refusal(response)[:2] == (429, "rate_limit_error")
    assert response.headers["retry-after"] == "3"


def test_stream_is_the_real_event_sequence_with_event_lines(fake):
    fake.script(Behaviour(reply="Hi you", tool_uses=[ToolUse("f", {"a": 1})]))
    body = {**BODY, "stream": True, "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    raw = post(fake, body).content
    events = [block.split(b"\n") for block in raw.split(b"\n\n") if block]
    kinds = []
    for name, data in events:
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        assert orjson.loads(data[6:])["type"] == name[7:].decode()
        kinds.append(name[7:].decode())
    assert kinds == ["message_start", "content_block_start", "ping",
                     "content_block_delta", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]


def test_models_are_paginated_with_limit_and_after_id(fake):
    url = fake.base_url + "/v1/models"
    first = httpx.get(url, params={"limit": 2}, headers=HEADERS).json()
    rest = httpx.get(url, params={"limit": 10, "after_id": first["last_id"]},
                     headers=HEADERS).json()
    assert first["has_more"] is True and rest["has_more"] is False
    assert [m["id"] for m in first["data"] + rest["data"]] == fake.models
