"""POST /v1/embeddings: the official openai SDK, httpx and aiohttp against the gateway on a
real port, the fake OpenAI upstream behind it, well-behaved and not."""

from __future__ import annotations

import asyncio
import base64
import struct

import aiohttp
import httpx
import openai
import orjson
import pytest

from circuit.accounting.bound import embeddings_bound
from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_surface import vector
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY, GatewayServer
from tests.support.keys import live_key
from tests.support.openai_spec import validator

URL = "/v1/embeddings"
SMALL = "text-embedding-3-small"


def _post(gateway, body, request_id, key=CLIENT_KEY, **kwargs) -> httpx.Response:
    return httpx.post(gateway.url + URL, headers={"Authorization": f"Bearer {key}",
                                                  "x-request-id": request_id},
                      timeout=30, **({"json": body} if body is not None else {}), **kwargs)


def _openai_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    return error


# -------------------------------------------------------------------------- well-behaved


def test_sdk_default_base64_request_returns_the_upstream_vector(openai_gateway, upstream):
    result = openai_gateway.client().embeddings.create(model=SMALL, input="hello there world")
    assert upstream.last.body["encoding_format"] == "base64"  # the SDK's default
    assert result.data[0].embedding == vector(0, 1536)  # decoded by the SDK, exact
    assert result.usage.prompt_tokens == 3


def test_float_encoding_answer_is_the_upstream_answer_and_meets_the_spec(openai_gateway,
                                                                          upstream, request_id):
    body = {"model": SMALL, "input": ["one", "two words"], "encoding_format": "float"}
    response = _post(openai_gateway, body, request_id)
    assert response.status_code == 200
    answer = response.json()
    validator("CreateEmbeddingResponse").validate(answer)
    assert [d["embedding"] for d in answer["data"]] == [vector(0, 1536), vector(1, 1536)]
    assert response.headers["x-circuit-provider"] == "openai"


def test_base64_answer_decodes_to_little_endian_float32(openai_gateway, upstream, request_id):
    body = {"model": SMALL, "input": "x", "encoding_format": "base64", "dimensions": 8}
    answer = _post(openai_gateway, body, request_id).json()
    data = answer["data"][0]["embedding"]
    assert list(struct.unpack("<8f", base64.b64decode(data))) == vector(0, 8)
    validator("CreateEmbeddingResponse").validate({**answer, "data": [
        {**d, "embedding": [0.0]} for d in answer["data"]]})  # the rest of the shape


def test_the_clients_bytes_go_upstream_unchanged(openai_gateway, upstream, request_id):
    raw = b'{"input": [[1, 2, 3], [4, 5]],   "model": "text-embedding-3-small", "user": "u1"}'
    response = _post(openai_gateway, None, request_id, content=raw)
    assert response.status_code == 200
    assert upstream.last.raw == raw
    assert upstream.last.path == "/v1/embeddings"


def test_the_provider_key_goes_upstream_never_the_clients(openai_gateway, upstream,
                                                          request_id):
    _post(openai_gateway, {"model": SMALL, "input": "x"}, request_id)
    assert upstream.last.api_key == PROVIDER_KEY
    assert CLIENT_KEY not in str(upstream.last.headers)


def test_usage_and_cost_are_recorded_for_the_embeddings_door(openai_gateway, upstream,
                                                             request_id):
    _post(openai_gateway, {"model": "text-embedding-3-large", "input": "four words of text"},
          request_id)
    row = openai_gateway.record(request_id)
    assert (row["api"], row["upstream_api"], row["status"]) == ("embeddings", "embeddings", "ok")
    assert (row["tokens_input"], row["tokens_output"], row["usage_source"]) == (4, 0, "provider")
    assert row["cost_micros"] == 1  # 4 x $0.13/M, rounded up to a micro-dollar


def test_token_arrays_are_billed_as_the_upstream_counts_them(openai_gateway, upstream,
                                                             request_id):
    response = _post(openai_gateway, {"model": SMALL, "input": [[1, 2, 3], [4, 5]],
                                      "encoding_format": "float"}, request_id)
    assert len(response.json()["data"]) == 2
    assert openai_gateway.record(request_id)["tokens_input"] == 5


def test_an_answer_without_usage_is_charged_its_bound(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(send_usage=False))
    body = {"model": SMALL, "input": "some words here", "encoding_format": "float"}
    assert _post(openai_gateway, body, request_id).status_code == 200
    row = openai_gateway.record(request_id)
    assert row["usage_source"] == "local"
    assert row["tokens_input"] == embeddings_bound(body).input_tokens(SMALL)


def test_aiohttp_client_gets_the_same_answer(openai_gateway, upstream):
    async def call() -> tuple[int, dict]:
        async with aiohttp.ClientSession() as session, session.post(
                openai_gateway.url + URL, data=orjson.dumps({"model": SMALL, "input": "a b",
                                                             "encoding_format": "float"}),
                headers={"Authorization": f"Bearer {CLIENT_KEY}",
                         "Content-Type": "application/json"}) as response:
            return response.status, await response.json()

    status, answer = asyncio.run(call())
    assert status == 200 and answer["usage"]["prompt_tokens"] == 2


# -------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("body, code", [
    ({"model": SMALL, "input": []}, "invalid_value"),
    ({"model": SMALL, "input": ""}, "invalid_value"),
    ({"model": SMALL, "input": 5}, "invalid_type"),
    ({"model": SMALL, "input": {"text": "x"}}, "invalid_type"),
    ({"model": SMALL, "input": [1, "a"]}, "invalid_type"),
    ({"model": SMALL, "input": ["a", 1]}, "invalid_type"),
    ({"model": SMALL, "input": [[]]}, "invalid_type"),
    ({"model": SMALL, "input": [[1, "2"]]}, "invalid_type"),
    ({"model": SMALL, "input": [None]}, "invalid_type"),
    ({"model": SMALL, "input": [True]}, "invalid_type"),
    ({"model": SMALL, "input": [-1]}, "invalid_type"),
    ({"model": SMALL, "input": ["x"] * 2049}, "array_above_max_length"),
    ({"model": SMALL}, "missing_required_parameter"),
    ({"input": "x"}, "missing_required_parameter"),
    ({"model": 3, "input": "x"}, "invalid_type"),
    ({"model": SMALL, "input": "x", "encoding_format": "int8"}, "invalid_value"),
    ({"model": SMALL, "input": "x", "dimensions": 0}, "invalid_type"),
    ({"model": SMALL, "input": "x", "dimensions": "8"}, "invalid_type"),
    ({"model": SMALL, "input": "x", "stream": True}, "unsupported_parameter"),
    ([SMALL, "x"], "invalid_json"),
])
def test_hostile_bodies_get_an_openai_400_and_never_reach_upstream(openai_gateway, upstream,
                                                                   request_id, body, code):
    _openai_error(_post(openai_gateway, body, request_id), 400, code)
    assert upstream.calls == 0
    row = openai_gateway.record(request_id)
    assert (row["api"], row["status"], row["status_code"]) == ("embeddings", "rejected", 400)


def test_a_body_that_is_not_json_gets_an_openai_400(openai_gateway, upstream, request_id):
    response = _post(openai_gateway, None, request_id, content=b"{input: nope")
    _openai_error(response, 400, "invalid_json")


def test_a_body_over_the_size_limit_gets_413(openai_gateway, upstream, request_id):
    response = _post(openai_gateway, {"model": SMALL, "input": ["word " * 100] * 200},
                     request_id)
    _openai_error(response, 413, "request_too_large")
    assert upstream.calls == 0


def test_the_sdk_raises_its_typed_error_for_a_bad_input(openai_gateway, upstream):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_gateway.client().embeddings.create(model=SMALL, input=[])
    assert raised.value.code == "invalid_value"


# -------------------------------------------------------------------------- misbehaving upstream


def test_an_upstream_429_reaches_the_sdk_as_a_rate_limit_error(openai_gateway, upstream):
    upstream.script(Behaviour(status=429, retry_after="1"))
    with pytest.raises(openai.RateLimitError):
        openai_gateway.client().embeddings.create(model=SMALL, input="x")


def test_an_upstream_500_is_a_502_in_openai_shape(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(status=500))
    response = _post(openai_gateway, {"model": SMALL, "input": "x"}, request_id)
    assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_error"
    assert openai_gateway.record(request_id)["status"] == "failed"


def test_an_upstream_error_quoting_the_provider_key_is_redacted(openai_gateway, upstream,
                                                                request_id):
    upstream.script(Behaviour(status=400, error_message=f"Bad key {PROVIDER_KEY} for you"))
    response = _post(openai_gateway, {"model": SMALL, "input": "x"}, request_id)
    assert response.status_code == 400
    assert PROVIDER_KEY not in response.text and PROVIDER_KEY[:12] not in response.text
    row = openai_gateway.record(request_id)
    assert PROVIDER_KEY not in (row["error_message"] or "")


def test_an_implausible_upstream_usage_is_charged_the_bound(openai_gateway, upstream,
                                                            request_id):
    upstream.script(Behaviour(usage={"prompt_tokens": -5, "total_tokens": -5}))
    response = _post(openai_gateway, {"model": SMALL, "input": "x"}, request_id)
    # An implausible usage is not believed: the request is charged its bound instead.
    assert response.status_code == 200
    assert openai_gateway.record(request_id)["usage_source"] == "local"


# -------------------------------------------------------------------------- a gateway of its own


CONFIG = """
provider = "primary"

[providers.primary]
kind = "openai"
base_url = "{base}"
api_key_env = "PRIMARY_KEY"
max_attempts = 2
backoff_initial = 0.01

[providers.backup]
kind = "openai"
base_url = "{base}"
api_key_env = "BACKUP_KEY"
max_attempts = 1

[routes]
"embed" = ["primary:text-embedding-3-small", "backup:text-embedding-3-large"]
"""


@pytest.fixture(scope="module")
def routed(tmp_path_factory, fake_openai):
    tmp = tmp_path_factory.mktemp("embeddings-routed")
    (tmp / "circuit.toml").write_text(CONFIG.format(base=fake_openai.base_url))
    server = GatewayServer(tmp, PRIMARY_KEY="sk-primary-key-0123456789",
                           BACKUP_KEY="sk-backup-key-0123456789",
                           CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000,
                           CIRCUIT_BREAKER_MINIMUM_CALLS=10_000,
                           CIRCUIT_MAX_UPSTREAM_RESPONSE_BYTES=256 * 1024).start()
    yield server
    server.stop()


def test_an_upstream_500_is_retried_before_the_client_sees_it(routed, upstream, request_id):
    upstream.script(Behaviour(status=500))
    response = _post(routed, {"model": SMALL, "input": "x"}, request_id)
    assert response.status_code == 200
    assert upstream.calls == 2
    assert routed.record(request_id)["attempts"] == 2


def test_a_failing_target_falls_back_to_the_next_with_its_model(routed, upstream, request_id):
    upstream.script(Behaviour(status=500), Behaviour(status=500))
    response = _post(routed, {"model": "embed", "input": "x", "encoding_format": "float"},
                     request_id)
    assert response.status_code == 200
    assert len(response.json()["data"][0]["embedding"]) == 3072  # the backup's model
    assert upstream.last.body["model"] == "text-embedding-3-large"
    assert upstream.last.api_key == "sk-backup-key-0123456789"
    row = routed.record(request_id)
    assert (row["provider"], row["model"], row["attempts"]) == ("backup", "embed", 3)


def test_an_oversized_upstream_answer_is_refused_with_a_502(routed, upstream, request_id):
    upstream.script(Behaviour(oversized=1024 * 1024))
    response = _post(routed, {"model": SMALL, "input": "x"}, request_id)
    _openai_error(response, 502, "upstream_response_too_large")
    assert upstream.calls == 1  # not retried: the same request would bring the same answer


def test_a_tiny_daily_limit_refuses_an_input_it_cannot_pay_for(routed, upstream, request_id):
    secret = live_key(routed, "tiny", daily_limit_usd=0.00001)  # ten micro-dollars
    big = {"model": "text-embedding-3-large", "input": "word " * 4000}  # 20k tokens bound: $0.0026
    _openai_error(_post(routed, big, request_id, key=secret), 429, "quota_exceeded")
    assert upstream.calls == 0
    small = _post(routed, {"model": "text-embedding-3-large", "input": "hi"},
                  request_id + "-small", key=secret)
    assert small.status_code == 200


def test_tokens_per_minute_count_the_input(routed, upstream, request_id):
    secret = live_key(routed, "tpm", tpm=100)
    body = {"model": SMALL, "input": "x" * 400}
    _openai_error(_post(routed, body, request_id, key=secret), 429, "rate_limit_exceeded")
    assert upstream.calls == 0


def test_a_routed_model_is_described_by_the_gateway(routed, upstream):
    model = routed.client().models.retrieve("embed")
    assert (model.id, model.owned_by) == ("embed", "circuit")
    assert upstream.calls == 0


def test_an_upstream_429_is_retried_and_then_served(routed, upstream, request_id):
    upstream.script(Behaviour(status=429, retry_after="0"))
    response = _post(routed, {"model": SMALL, "input": "x"}, request_id)
    assert response.status_code == 200 and upstream.calls == 2


@pytest.fixture
def fragile(tmp_path, upstream):
    """A gateway whose breaker opens after two failures in a row, and stays open."""
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY, CIRCUIT_RETRY_MAX_ATTEMPTS=1,
                           CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=2,
                           CIRCUIT_BREAKER_COOLDOWN=600).start()
    yield server
    server.stop()


def test_embeddings_failures_open_the_breaker(fragile, upstream, request_id):
    upstream.default = Behaviour(status=500)
    for attempt in range(2):
        assert _post(fragile, {"model": SMALL, "input": "x"}, f"{request_id}-{attempt}"
                     ).status_code == 502
    response = _post(fragile, {"model": SMALL, "input": "x"}, request_id)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json() == {"error": {"code": "service_unavailable",
                                         "message": "Upstream provider temporarily unavailable"}}
    assert upstream.calls == 2  # the third never reached the upstream


def test_a_routed_models_description_meets_the_spec(routed):
    answer = httpx.get(routed.url + "/v1/models/embed", timeout=30,
                       headers={"Authorization": f"Bearer {CLIENT_KEY}"}).json()
    validator("Model").validate(answer)
