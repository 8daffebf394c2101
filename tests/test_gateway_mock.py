"""The gateway on the built-in mock provider, driven by the official OpenAI SDK."""

from __future__ import annotations

import httpx

from tests.support.gateway_server import CLIENT_KEY


def test_json_completion_through_sdk_is_recorded_with_tokens_and_cost(mock_gateway, request_id):
    client = mock_gateway.client()
    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello, Circuit"}],
        extra_headers={"x-request-id": request_id})
    completion = response.parse()
    assert response.headers["x-request-id"] == request_id
    assert "You said: Hello, Circuit" in completion.choices[0].message.content
    row = mock_gateway.record(request_id)
    assert row["status"] == "ok" and row["status_code"] == 200
    assert row["tokens_input"] == completion.usage.prompt_tokens > 0
    assert row["tokens_output"] == completion.usage.completion_tokens > 0
    assert row["usage_source"] == "provider"
    assert row["cost_usd"] > 0 and row["key_name"] == "config-1"
    assert row["provider"] == "mock" and row["stream"] == 0


def test_stream_through_sdk_yields_several_chunks_and_is_recorded(mock_gateway, request_id):
    client = mock_gateway.client()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Stream please"}],
        stream=True, extra_headers={"x-request-id": request_id})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 5
    assert "You said: Stream please" in text
    assert all(c.usage is None for c in chunks), "usage chunk hidden when not asked for"
    row = mock_gateway.record(request_id)
    assert row["status"] == "ok" and row["stream"] == 1
    assert row["tokens_output"] > 0 and row["partial_text"] is None


def test_stream_usage_is_passed_on_when_the_client_asks(mock_gateway):
    stream = mock_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count me"}],
        stream=True, stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens > 0


def test_max_tokens_truncates_and_reports_length(mock_gateway, request_id):
    completion = mock_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say a lot"}], max_tokens=4,
        extra_headers={"x-request-id": request_id})
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens <= 4
    assert mock_gateway.record(request_id)["tokens_output"] == completion.usage.completion_tokens


def test_models_lists_mock_models_and_is_not_recorded(mock_gateway):
    before = len(mock_gateway.records(expect=0, timeout=0))
    models = [m.id for m in mock_gateway.client().models.list()]
    assert "gpt-4o-mini" in models
    assert httpx.get(mock_gateway.url + "/healthz").json()["status"] == "ok"
    # Ordered, not timed: records are written in order, so once a chat request made after
    # these has its row, any row theirs would have come first.
    completion = mock_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "after"}])
    rows = mock_gateway.records(expect=before + 1)
    assert len(rows) == before + 1 and rows[-1]["model"] == completion.model


def test_models_requires_a_key(mock_gateway):
    response = httpx.get(mock_gateway.url + "/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_generated_request_id_is_on_the_response_and_the_record(mock_gateway):
    response = httpx.post(mock_gateway.url + "/v1/chat/completions",
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    assert mock_gateway.record(request_id)["model"] == "gpt-4o"


def test_malformed_incoming_request_id_is_replaced(mock_gateway):
    response = httpx.post(mock_gateway.url + "/v1/chat/completions",
                          headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                   "x-request-id": "bad id with spaces"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert response.headers["x-request-id"].startswith("req_")
