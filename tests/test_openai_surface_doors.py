"""The rest of the OpenAI surface through the gateway on a real port, the official openai SDK
as client and the fake OpenAI upstream behind: legacy completions (JSON and stream), stored
chat completions, a model's description, and the endpoints Circuit cannot bound."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from circuit.keys import NO_DAILY_LIMIT
from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY
from tests.support.keys import live_key
from tests.support.openai_spec import validator
from tests.support.raw_http import exchange

INSTRUCT = "gpt-3.5-turbo-instruct"
HELLO = [{"role": "user", "content": "Hello store"}]


def _headers(request_id: str, key: str = CLIENT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "x-request-id": request_id}


@pytest.fixture(scope="module")
def unlimited(openai_gateway) -> str:
    """A key without a daily limit (the gateway's default is $10 a day)."""
    return live_key(openai_gateway, "unlimited", daily_limit_usd=NO_DAILY_LIMIT)


# -------------------------------------------------------------------------- legacy completions


def test_a_legacy_completion_passes_through_and_is_recorded(openai_gateway, upstream):
    completion = openai_gateway.client().completions.with_raw_response.create(
        model=INSTRUCT, prompt="Say something", max_tokens=4)
    answer = completion.parse()
    assert answer.choices[0].text == "This is a deterministic"
    assert answer.usage.completion_tokens == 4
    row = openai_gateway.record(completion.headers["x-request-id"])
    assert (row["api"], row["upstream_api"], row["tokens_output"]) == ("completions",
                                                                       "completions", 4)
    assert row["cost_micros"] is not None and row["finish_reason"] == "length"


def test_a_streamed_completion_hides_the_usage_chunk_it_asked_for(openai_gateway, upstream,
                                                                  request_id):
    stream = openai_gateway.client().completions.create(
        model=INSTRUCT, prompt="Go", stream=True, extra_headers={"x-request-id": request_id})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == \
        "This is a deterministic legacy completion."
    assert all(c.usage is None for c in chunks)
    assert upstream.last.body["stream_options"] == {"include_usage": True}
    row = openai_gateway.record(request_id)
    assert (row["usage_source"], row["tokens_output"], row["stream"]) == ("provider", 6, 1)


def test_a_streamed_completion_that_asks_for_usage_gets_it(openai_gateway, upstream):
    stream = openai_gateway.client().completions.create(
        model=INSTRUCT, prompt="Go", stream=True, stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage is not None]
    assert usage and usage[0].completion_tokens == 6


def test_completions_reserve_every_choice_of_every_prompt(openai_gateway, upstream,
                                                          request_id):
    secret = live_key(openai_gateway, "cents", daily_limit_usd=0.01)
    body = {"model": INSTRUCT, "prompt": ["a", "b"], "n": 5, "best_of": 5, "max_tokens": 100}
    # 2 prompts x 5 x 5 x 100 tokens at $2/M is $0.01 of output alone: refused, not called.
    response = httpx.post(openai_gateway.url + "/v1/completions", json=body,
                          headers=_headers(request_id, secret), timeout=30)
    assert response.status_code == 429 and response.json()["error"]["code"] == "quota_exceeded"
    assert upstream.calls == 0


@pytest.mark.parametrize("body", [
    {"model": INSTRUCT, "prompt": []},
    {"model": INSTRUCT, "prompt": 7},
    {"model": INSTRUCT, "prompt": "x", "stream": "yes"},
    {"model": INSTRUCT},
])
def test_hostile_completions_get_an_openai_400(openai_gateway, upstream, request_id, body):
    response = httpx.post(openai_gateway.url + "/v1/completions", json=body,
                          headers=_headers(request_id), timeout=30)
    assert response.status_code == 400 and response.json()["error"]["type"] == \
        "invalid_request_error"
    assert upstream.calls == 0
    assert openai_gateway.record(request_id)["api"] == "completions"


# -------------------------------------------------------------------------- stored chat completions


@pytest.fixture
def stored(openai_gateway, upstream) -> str:
    """The id of a chat completion made through the gateway with `store: true`."""
    return openai_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, store=True).id


def test_stored_completions_are_listed_with_the_query_forwarded(openai_gateway, stored,
                                                                upstream):
    page = openai_gateway.client().chat.completions.list(limit=1, model="gpt-4o-mini")
    assert [c.id for c in page.data] == [stored]
    assert upstream.last.method == "GET" and "limit=1" in upstream.last.query
    assert upstream.last.api_key == PROVIDER_KEY


def test_a_stored_completion_is_retrieved_updated_and_deleted(openai_gateway, stored):
    client = openai_gateway.client()
    assert client.chat.completions.retrieve(stored).id == stored
    updated = client.chat.completions.update(stored, metadata={"team": "search"})
    assert updated.metadata == {"team": "search"}
    deleted = client.chat.completions.delete(stored)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(stored)


def test_a_stored_completions_messages_are_listed(openai_gateway, stored):
    messages = openai_gateway.client().chat.completions.messages.list(stored)
    assert [m.content for m in messages.data] == ["Hello store"]


def test_stored_completion_calls_are_recorded_as_chat_store_and_cost_nothing(
        openai_gateway, stored, request_id):
    response = httpx.get(openai_gateway.url + f"/v1/chat/completions/{stored}",
                         headers=_headers(request_id), timeout=30)
    assert response.status_code == 200
    row = openai_gateway.record(request_id)
    assert (row["api"], row["status"], row["provider"]) == ("chat_store", "ok", "openai")
    assert not row["cost_micros"] and row["tokens_input"] == 0


def test_stored_completions_need_a_key(openai_gateway, upstream):
    with pytest.raises(openai.AuthenticationError):
        openai_gateway.client(key="sk-wrong").chat.completions.list()
    assert upstream.calls == 0


# -------------------------------------------------------------------------- models


def test_a_model_is_described_by_the_upstream(openai_gateway, upstream):
    model = openai_gateway.client().models.retrieve("gpt-4o-mini")
    assert (model.id, model.owned_by) == ("gpt-4o-mini", "system")
    assert upstream.last.path == "/v1/models/gpt-4o-mini"


def test_an_unknown_model_is_the_upstreams_404(openai_gateway, upstream):
    with pytest.raises(openai.NotFoundError):
        openai_gateway.client().models.retrieve("no-such-model")


def test_a_described_model_is_recorded_as_models(openai_gateway, upstream, request_id):
    httpx.get(openai_gateway.url + "/v1/models/gpt-4o", headers=_headers(request_id))
    assert openai_gateway.record(request_id)["api"] == "models"


# -------------------------------------------------------------------------- unboundable endpoints


def test_an_unboundable_endpoint_is_refused_for_a_key_with_a_daily_limit(openai_gateway,
                                                                         upstream):
    with pytest.raises(openai.PermissionDeniedError) as raised:
        openai_gateway.client().files.list()
    assert raised.value.code == "endpoint_not_budgeted"
    assert "daily limit" in raised.value.message
    assert upstream.calls == 0


def test_an_unboundable_endpoint_passes_through_for_a_key_without_one(openai_gateway,
                                                                      upstream, unlimited,
                                                                      request_id):
    client = openai_gateway.client(key=unlimited)
    assert [f.id for f in client.files.list().data] == ["file-fake1"]
    upload = client.files.create(file=("batch.jsonl", b'{"a": 1}\n'), purpose="batch")
    assert upload.id == "file-fake1"
    assert upstream.last.headers["content-type"].startswith("multipart/form-data")
    assert b'{"a": 1}' in upstream.last.raw
    rows = _rows_of(openai_gateway, "unlimited", 2)  # the list and the upload
    assert {r["api"] for r in rows} == {"files"}


def _rows_of(gateway, key_name: str, count: int, timeout: float = 10.0) -> list[dict]:
    """The records of one key, once the writer has written `count` of them (or time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in gateway.records(expect=0) if r["key_name"] == key_name]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def test_a_path_that_climbs_out_of_the_api_is_refused(openai_gateway, upstream, unlimited):
    request = (b"GET /v1/files/../../admin HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
               + unlimited.encode() + b"\r\nConnection: close\r\n\r\n")
    answer = exchange(openai_gateway.port, request)
    assert answer.status == 400 and answer.json()["error"]["code"] == "invalid_path"
    assert upstream.calls == 0


def test_an_upstream_failure_on_a_passthrough_is_in_openai_shape(openai_gateway, upstream,
                                                                 unlimited):
    upstream.script(Behaviour(status=500))
    with pytest.raises(openai.InternalServerError) as raised:
        openai_gateway.client(key=unlimited).files.list()
    assert raised.value.status_code == 502


def test_a_completions_stream_that_breaks_ends_with_an_error_event(openai_gateway, upstream,
                                                                    request_id):
    upstream.script(Behaviour(drop_after_chunks=2))
    stream = openai_gateway.client().completions.create(
        model=INSTRUCT, prompt="Go", stream=True, extra_headers={"x-request-id": request_id})
    texts = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            texts.append(chunk.choices[0].text)
    assert "".join(texts) == "This is"
    row = openai_gateway.record(request_id)
    assert (row["status"], row["partial_text"]) == ("failed", "This is")
    assert row["api"] == "completions" and row["tokens_output"] > 0


# -------------------------------------------------------------------------- against the spec


def _get(gateway, path: str, key: str = CLIENT_KEY) -> dict:
    response = httpx.get(gateway.url + path, headers={"Authorization": f"Bearer {key}"},
                         timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_passed_through_answers_meet_openais_schemas(openai_gateway, stored, unlimited):
    validator("ChatCompletionList").validate(_get(openai_gateway, "/v1/chat/completions"))
    validator("Model").validate(_get(openai_gateway, "/v1/models/gpt-4o-mini"))
    validator("ListFilesResponse").validate(_get(openai_gateway, "/v1/files", unlimited))
    deleted = httpx.delete(openai_gateway.url + f"/v1/chat/completions/{stored}",
                           headers={"Authorization": f"Bearer {CLIENT_KEY}"}).json()
    validator("ChatCompletionDeleted").validate(deleted)


def test_a_legacy_completion_meets_the_spec(openai_gateway, upstream):
    response = httpx.post(openai_gateway.url + "/v1/completions", timeout=30,
                          json={"model": INSTRUCT, "prompt": "Hi", "max_tokens": 3},
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    validator("CreateCompletionResponse").validate(response.json())


def test_the_models_circuit_describes_itself_meet_the_spec(mock_gateway):
    # The mock describes any model; a routed one the gateway describes (see the routed tests).
    validator("Model").validate(_get(mock_gateway, "/v1/models/gpt-4o-mini"))
