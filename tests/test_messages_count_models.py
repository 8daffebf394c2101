"""count_tokens (passed through to Anthropic, counted locally elsewhere and marked so) and
GET /v1/models in Anthropic's shape, through the official anthropic SDK on a real port."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.fakes.anthropic_upstream import Behaviour, FakeAnthropic, count_input_tokens
from tests.support.gateway_server import CLIENT_KEY, GatewayServer
from tests.support.keys import live_key

MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "How many tokens is this?"}]


@pytest.fixture
def upstream(anthropic_upstream: FakeAnthropic) -> FakeAnthropic:
    """The session's fake Anthropic (tests/conftest.py), reset for each test."""
    return anthropic_upstream


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake_anthropic) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("count-gw"), PROVIDER="anthropic",
                           ANTHROPIC_BASE_URL=fake_anthropic.base_url,
                           ANTHROPIC_API_KEY="sk-ant-provider-key-0123456789",
                           CIRCUIT_RETRY_MAX_ATTEMPTS=1).start()
    yield server
    server.stop()


def sdk(server: GatewayServer, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0, timeout=15)


def test_count_tokens_is_the_upstreams_count(gateway, upstream):
    raw = sdk(gateway).messages.with_raw_response.count_tokens(model=MODEL, messages=HELLO,
                                                               system="Be brief.")
    assert raw.parse().input_tokens == count_input_tokens(upstream.last.body)
    assert upstream.last.path == "/v1/messages/count_tokens"
    assert raw.headers["x-circuit-token-count"] == "provider"


def test_count_tokens_leaves_a_record_that_costs_nothing(gateway, upstream):
    raw = sdk(gateway).messages.with_raw_response.count_tokens(model=MODEL, messages=HELLO)
    row = gateway.record(raw.headers["x-request-id"])
    assert (row["api"], row["upstream_api"], row["status"]) == ("count_tokens",
                                                                "count_tokens", "ok")
    assert row["cost_micros"] == 0


def test_count_tokens_needs_no_price_on_a_key_with_a_daily_limit(gateway, upstream):
    # A count bills nothing: an unpriced model is counted, where a message would be a 403.
    key = live_key(gateway, "counting", daily_limit_usd=1.0)
    count = sdk(gateway, key).messages.count_tokens(model="my-unpriced-finetune",
                                                    messages=HELLO)
    assert count.input_tokens == count_input_tokens({"messages": HELLO})
    assert upstream.last.body["model"] == "my-unpriced-finetune"
    with pytest.raises(anthropic.PermissionDeniedError, match="has no price"):
        sdk(gateway, key).messages.create(model="my-unpriced-finetune", max_tokens=16,
                                          messages=HELLO)


def test_count_tokens_upstream_failure_raises_typed_error(gateway, upstream):
    upstream.script(Behaviour(status=529))
    with pytest.raises(anthropic.InternalServerError) as caught:
        sdk(gateway).messages.count_tokens(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 529


def test_count_tokens_needs_a_key(gateway, upstream):
    with pytest.raises(anthropic.AuthenticationError):
        sdk(gateway, key="sk-wrong").messages.count_tokens(model=MODEL, messages=HELLO)
    assert upstream.calls == 0


def test_count_tokens_refuses_a_body_without_messages(gateway, upstream):
    answer = httpx.post(gateway.url + "/v1/messages/count_tokens",
                        headers={"x-api-key": CLIENT_KEY}, json={"model": MODEL})
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    # Recorded as the count it was, not as a message.
    assert gateway.record(answer.headers["x-request-id"])["api"] == "count_tokens"


def test_models_answer_in_anthropic_shape_to_an_anthropic_client(gateway, upstream):
    page = sdk(gateway).models.list()
    ids = [model.id for model in page.data]
    assert ids == upstream.models
    assert all(model.type == "model" for model in page.data)


def test_models_come_in_pages_of_the_limit_the_sdk_iterates_through(gateway, upstream):
    first = sdk(gateway).models.list(limit=2)
    assert [model.id for model in first.data] == upstream.models[:2]
    assert first.has_more == (len(upstream.models) > 2)
    assert [model.id for model in sdk(gateway).models.list(limit=2)] == upstream.models


def test_models_before_an_id_are_the_page_that_ends_there(gateway, upstream):
    last = upstream.models[-1]
    page = sdk(gateway).models.list(limit=1, before_id=last)
    assert [model.id for model in page.data] == [upstream.models[-2]]


@pytest.mark.parametrize("limit", ["0", "1001", "two"])
def test_a_models_limit_out_of_range_is_anthropics_400(gateway, upstream, limit):
    answer = httpx.get(gateway.url + "/v1/models", params={"limit": limit},
                       headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_models_stay_in_openai_shape_without_anthropic_version(gateway, upstream):
    answer = httpx.get(gateway.url + "/v1/models",
                       headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert answer.json()["object"] == "list"
    assert answer.json()["data"][0]["object"] == "model"


def test_models_refuse_an_anthropic_client_in_anthropic_shape(gateway, upstream):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk(gateway, key="sk-wrong").models.list()
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_count_tokens_for_a_chat_target_is_local_and_says_so(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock").start()
    try:
        raw = sdk(server).messages.with_raw_response.count_tokens(
            model="gpt-4o-mini", messages=HELLO, system="Be brief.")
        assert raw.headers["x-circuit-token-count"] == "local"
        assert raw.parse().input_tokens > len(["How", "many", "tokens", "is", "this?"])
        row = server.record(raw.headers["x-request-id"])
        assert (row["api"], row["status"]) == ("count_tokens", "ok")
    finally:
        server.stop()


def test_a_model_is_retrieved_in_anthropic_shape_by_an_anthropic_client(gateway, upstream):
    model = sdk(gateway).models.retrieve(upstream.models[0])
    assert (model.type, model.id, model.display_name) == ("model", upstream.models[0],
                                                         upstream.models[0])
    assert model.created_at.year == 1970


def test_an_unknown_model_is_anthropics_404(gateway, upstream):
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(gateway).models.retrieve("claude-none-9")
    assert caught.value.body == {"type": "error", "error": {
        "type": "not_found_error", "message": "model: claude-none-9"}}


def test_retrieving_a_model_refuses_an_anthropic_client_in_anthropic_shape(gateway, upstream):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk(gateway, key="sk-wrong").models.retrieve(upstream.models[0])
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_a_routed_model_is_retrieved_in_either_shape(tmp_path):
    (tmp_path / "circuit.toml").write_text('[routes]\n"house-model" = ["mock:gpt-4o-mini"]\n')
    server = GatewayServer(tmp_path, PROVIDER="mock").start()
    try:
        assert sdk(server).models.retrieve("house-model").id == "house-model"
        described = httpx.get(server.url + "/v1/models/house-model",
                              headers={"authorization": f"Bearer {CLIENT_KEY}"}).json()
        assert (described["object"], described["owned_by"]) == ("model", "circuit")
    finally:
        server.stop()


def test_an_anthropic_client_retrieves_every_model_an_openai_client_can(tmp_path):
    """The mock describes any id (its short list is not what it serves): the Anthropic SDK's
    retrieve answers for the ids the OpenAI-shaped retrieve answers for."""
    server = GatewayServer(tmp_path, PROVIDER="mock").start()
    try:
        for model in (MODEL, "gpt-4o-mini", "any-model-at-all"):
            openai_shaped = httpx.get(server.url + f"/v1/models/{model}",
                                      headers={"authorization": f"Bearer {CLIENT_KEY}"})
            assert openai_shaped.status_code == 200
            described = sdk(server).models.retrieve(model)
            assert (described.type, described.id) == ("model", model)
        assert sdk(server).messages.create(model=MODEL, max_tokens=16,
                                           messages=HELLO).model
    finally:
        server.stop()


def test_with_the_default_provider_down_a_routed_model_is_described_and_errors_are_clean(
        tmp_path):
    (tmp_path / "circuit.toml").write_text('[routes]\n"house-model" = ["mock:gpt-4o-mini"]\n')
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL="http://127.0.0.1:1/v1",
                           OPENAI_API_KEY="sk-provider-unused-0123456789",
                           CIRCUIT_RETRY_MAX_ATTEMPTS=1).start()
    try:
        assert sdk(server).models.retrieve("house-model").id == "house-model"
        calls = (lambda: sdk(server).models.retrieve("gpt-4o"), sdk(server).models.list)
        for call in calls:
            with pytest.raises(anthropic.APIStatusError) as caught:
                call()
            error = caught.value.body["error"]
            assert caught.value.body["type"] == "error"
            assert error["type"] == "api_error"
            assert "ssl:default" not in error["message"]
            assert "Cannot connect" not in error["message"]
    finally:
        server.stop()
