"""A budget refusal tells the client how to reserve less in its own door's words: the output
limit that door has (`max_output_tokens` on /v1/responses, a lower `max_tokens` on
/v1/messages, where it is required), and nothing on /v1/embeddings, which has no output to
limit. On the mock, whose priced model names are charged at their price, with a key whose
daily limit no request fits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway_server import CLIENT_KEY, GatewayServer

ADVICE = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("budget-advice"), PROVIDER="mock",
                           CIRCUIT_DAILY_USD_LIMIT="0.000001").start()
    yield server
    server.stop()


@pytest.mark.parametrize(("path", "body", "advice"), [
    ("/v1/chat/completions", {"model": "gpt-4o-mini",
                              "messages": [{"role": "user", "content": "Hi"}]},
     "Send max_completion_tokens or max_tokens to reserve less."),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi"},
     "Send max_output_tokens to reserve less."),
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 16_000,
                      "messages": [{"role": "user", "content": "Hi"}]},
     "Send a lower max_tokens to reserve less."),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "Hi " * 50}, None),
])
def test_a_budget_refusal_advises_the_doors_own_output_limit(gateway, path, body, advice,
                                                              request_id):
    answer = httpx.post(gateway.url + path, json=body, timeout=10, headers={
        "Authorization": f"Bearer {CLIENT_KEY}", "x-request-id": request_id})
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    message = error["message"]
    assert message.startswith("Daily budget of $0.000001 for this key would be exceeded")
    assert "The budget resets at 00:00 UTC" in message
    if advice is None:
        assert not any(field in message for field in ADVICE), message
    else:
        assert advice in message
        assert [field for field in ADVICE if field in message] == [
            field for field in ADVICE if field in advice]
    assert gateway.record(request_id)["error_message"] == message
