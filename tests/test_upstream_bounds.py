"""What an upstream sends is bounded: a JSON answer past CIRCUIT_MAX_UPSTREAM_RESPONSE_BYTES,
or one stream event past CIRCUIT_MAX_UPSTREAM_EVENT_BYTES, ends in a 502
`upstream_response_too_large` (an error event and `[DONE]` once a stream has begun), is not
retried, and is never read whole. Through the real server, in front of the fake upstreams.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes.anthropic_upstream import Behaviour as AnthropicBehaviour
from tests.fakes.openai_upstream import Behaviour
from tests.reliability.support import auth, chat_body, is_openai_error, sse_data
from tests.support.gateway_server import GatewayServer

CHAT = "/v1/chat/completions"
RESPONSE_BOUND = 1024 * 1024
EVENT_BOUND = 64 * 1024
BOUNDS = {"CIRCUIT_MAX_UPSTREAM_RESPONSE_BYTES": RESPONSE_BOUND,
          "CIRCUIT_MAX_UPSTREAM_EVENT_BYTES": EVENT_BOUND,
          # Were it retried, the fake would see the call three times.
          "CIRCUIT_RETRY_MAX_ATTEMPTS": 3, "CIRCUIT_RETRY_BACKOFF_INITIAL": 0.01}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("bounds-gw"), PROVIDER="openai",
                           OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY=PROVIDER_KEY,
                           **BOUNDS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def anthropic_gateway(tmp_path_factory: pytest.TempPathFactory,
                      fake_anthropic) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("bounds-anthropic-gw"),
                           PROVIDER="anthropic", ANTHROPIC_BASE_URL=fake_anthropic.base_url,
                           ANTHROPIC_API_KEY="sk-ant-" + PROVIDER_KEY, **BOUNDS).start()
    yield server
    server.stop()


def post(gateway: GatewayServer, request_id: str, **body: object) -> httpx.Response:
    return httpx.post(gateway.url + CHAT, content=orjson.dumps(chat_body(**body)),
                      headers=auth(request_id=request_id), timeout=30)


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 502, response.text[:300]
    assert is_openai_error(response.json())
    assert response.json()["error"]["code"] == "upstream_response_too_large"


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content_length"])
def test_a_json_answer_over_the_bound_gets_502_and_is_not_retried(gateway, upstream, declared,
                                                                 request_id):
    upstream.default = Behaviour(oversized=4 * RESPONSE_BOUND, oversized_declared=declared)
    response = post(gateway, request_id)
    assert_too_large(response)
    assert upstream.calls == 1
    row = gateway.record(request_id)
    assert (row["status"], row["error_code"]) == ("failed", "upstream_response_too_large")


def test_a_json_answer_within_the_bound_is_relayed(gateway, upstream, request_id):
    upstream.default = Behaviour(oversized=RESPONSE_BOUND // 2)
    response = post(gateway, request_id)
    assert response.status_code == 200
    assert len(response.json()["choices"][0]["message"]["content"]) == RESPONSE_BOUND // 2


def test_a_stream_whose_first_event_is_over_the_bound_gets_502(gateway, upstream, request_id):
    upstream.default = Behaviour(oversized=4 * EVENT_BOUND)
    assert_too_large(post(gateway, request_id, stream=True))
    assert upstream.calls == 1


def test_a_stream_event_over_the_bound_ends_the_stream_with_an_error_event(gateway, upstream,
                                                                          request_id):
    upstream.default = Behaviour(oversized=4 * EVENT_BOUND, oversized_after_chunks=3)
    response = post(gateway, request_id, stream=True)
    assert response.status_code == 200
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    assert orjson.loads(events[-2])["error"]["code"] == "upstream_response_too_large"
    words = [orjson.loads(e)["choices"][0]["delta"]["content"] for e in events[:-2]]
    assert len(words) == 3 and all(len(w) < 100 for w in words), "the chunks before it passed"
    row = gateway.record(request_id)
    assert (row["status"], row["error_code"]) == ("failed", "upstream_response_too_large")


def test_an_anthropic_answer_over_the_bound_gets_502(anthropic_gateway, anthropic_upstream,
                                                     request_id):
    anthropic_upstream.default = AnthropicBehaviour(oversized=4 * RESPONSE_BOUND)
    assert_too_large(post(anthropic_gateway, request_id))
    assert anthropic_upstream.calls == 1


def test_an_anthropic_stream_event_over_the_bound_ends_the_stream_with_an_error_event(
        anthropic_gateway, anthropic_upstream, request_id):
    anthropic_upstream.default = AnthropicBehaviour(oversized=4 * EVENT_BOUND,
                                                    oversized_after_deltas=2)
    response = post(anthropic_gateway, request_id, stream=True)
    assert response.status_code == 200
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    assert orjson.loads(events[-2])["error"]["code"] == "upstream_response_too_large"
    assert anthropic_upstream.calls == 1
