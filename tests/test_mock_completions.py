"""The mock provider answers legacy completions (PROVIDER=mock), JSON and stream, in
OpenAI's `text_completion` shape, so the door can be tried without a network."""

from __future__ import annotations

import httpx

from tests.support.gateway_server import CLIENT_KEY
from tests.support.openai_spec import validator


def test_a_completion_meets_the_spec_and_stops_at_sixteen_tokens(mock_gateway):
    response = httpx.post(mock_gateway.url + "/v1/completions", timeout=30,
                          json={"model": "gpt-3.5-turbo-instruct", "prompt": "Tell me a story"},
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    answer = response.json()
    validator("CreateCompletionResponse").validate(answer)
    assert answer["usage"]["completion_tokens"] <= 16


def test_every_prompt_gets_n_choices(mock_gateway):
    answer = mock_gateway.client().completions.create(
        model="gpt-3.5-turbo-instruct", prompt=["one", "two"], n=2, max_tokens=5)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert all(c.text for c in answer.choices)


def test_a_stream_gives_the_same_text_and_is_recorded_with_usage(mock_gateway, request_id):
    client = mock_gateway.client()
    whole = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi",
                                      max_tokens=8).choices[0].text
    chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi",
                                            max_tokens=8, stream=True,
                                            extra_headers={"x-request-id": request_id}))
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert all(c.usage is None for c in chunks)  # the usage chunk was not asked for
    row = mock_gateway.record(request_id)
    assert (row["api"], row["usage_source"], row["status"]) == ("completions", "provider", "ok")
    assert row["tokens_output"] > 0
