"""What the gateway makes of an upstream that answers in ways it should not: JSON to a stream
request, its own credentials refused, errors naming a parameter."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

HELLO = [{"role": "user", "content": "Hello"}]
BODY = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 20}


@pytest.fixture
def gateway(tmp_path, upstream):
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY, CIRCUIT_RETRY_MAX_ATTEMPTS=3,
                           CIRCUIT_RETRY_BACKOFF_INITIAL=0.01,
                           CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=2,
                           CIRCUIT_BREAKER_COOLDOWN=30).start()
    yield server
    server.stop()


def _post(gateway, body=BODY) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"})


def test_json_answered_to_a_stream_request_is_one_502_not_retried_nor_blamed(gateway,
                                                                             upstream):
    upstream.default = Behaviour(json_for_stream=True)
    response = _post(gateway, {**BODY, "stream": True})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_not_streaming"
    assert upstream.calls == 1, "a retry would get the same JSON"
    assert gateway.gateway.breakers["openai"].failures_in_window() == (1, 0)
    for _ in range(3):
        _post(gateway, {**BODY, "stream": True})
    assert gateway.gateway.breakers["openai"].state == "closed"
    assert _post(gateway).status_code == 200, "JSON requests still work"


def test_refused_gateway_credentials_are_not_retried_and_operators_see_why(gateway, upstream):
    upstream.default = Behaviour(status=401)
    first = _post(gateway)
    assert first.status_code == 502
    assert first.json()["error"]["code"] == "upstream_auth_failed"
    assert upstream.calls == 1, "the same credentials would be refused again"
    _post(gateway)  # the second failure in a row opens the breaker
    assert gateway.gateway.breakers["openai"].state == "open"
    refused = _post(gateway)
    assert refused.status_code == 503
    assert refused.json() == {"error": {"code": "service_unavailable",
                                        "message": "Upstream provider temporarily unavailable"}}
    assert refused.headers["x-circuit-breaker-cause"] == "openai=upstream_auth_failed"
    ready = httpx.get(gateway.url + "/readyz", timeout=10).json()
    assert ready["checks"]["providers"]["last_failures"]["openai"].startswith(
        "upstream_auth_failed at ")


def test_breaker_status_names_the_last_failure(gateway, upstream):
    from circuit.store.sqlite import SQLiteStore

    upstream.default = Behaviour(status=401)
    _post(gateway)
    store = SQLiteStore(gateway.db_path)
    try:
        deadline = time.monotonic() + 10
        while True:
            rows = store.breaker_states()
            if rows and rows[0].last_failure or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        store.close()
    assert rows[0].last_failure.startswith("upstream_auth_failed at ")


def test_an_upstream_400_keeps_the_parameter_it_names(gateway, upstream):
    upstream.script(Behaviour(status=400, error_message="Unsupported value: 'temperature'",
                              error_code="unsupported_value", error_param="temperature"))
    client = gateway.client()
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, temperature=3)
    assert raised.value.param == "temperature"
