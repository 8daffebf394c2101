"""Errors the router answers itself (an unknown path, a method a path does not take) under
/v1/messages, or for a client that sends `anthropic-version`, are in Anthropic's shape, so
the official anthropic SDK raises its typed exceptions; other clients keep OpenAI's."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.support.gateway_server import CLIENT_KEY, GatewayServer


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("messages-routing"), PROVIDER="mock").start()
    yield server
    server.stop()


def sdk(server: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=CLIENT_KEY, max_retries=0,
                               timeout=15)


def test_message_batches_are_anthropics_not_found(gateway):
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(gateway).messages.batches.create(requests=[{
            "custom_id": "one", "params": {"model": "claude-sonnet-4-5", "max_tokens": 8,
                                           "messages": [{"role": "user", "content": "Hi"}]}}])
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        sdk(gateway).messages.batches.list()


def test_a_method_messages_does_not_take_is_an_anthropic_400_shaped_405(gateway):
    answer = httpx.get(gateway.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY})
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    body = answer.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "GET" in body["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk(gateway).get("/v1/messages", cast_to=httpx.Response)
    assert caught.value.status_code == 405
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_an_anthropic_client_elsewhere_gets_anthropics_shape(gateway):
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(gateway).get("/v1/nowhere", cast_to=httpx.Response)
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_an_openai_client_keeps_openais_shape(gateway):
    answer = httpx.get(gateway.url + "/v1/nowhere",
                       headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
