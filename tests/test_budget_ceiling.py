"""The daily limit is a ceiling no request shape can pass, and an upstream that breaks its
contract is contained: cut, flagged, never booked past the limit.

Each shape here passed a $0.002 key's limit before the reservation bounded it (the red-team
table in issue 12). gpt-4o-mini costs $0.15 per million input tokens and $0.60 per million
output tokens: $0.002 is 2,000 micro-dollars, about 3,300 output tokens.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from circuit.accounting.budget import utc_day
from circuit.store.sqlite import SQLiteStore
from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import GatewayServer
from tests.support.keys import live_key

LIMIT_USD = 0.002
LIMIT_MICROS = 2_000
HELLO = [{"role": "user", "content": "Hello budget"}]
LONG_REPLY = " ".join(["word"] * 2_000)


@pytest.fixture
def gateway(tmp_path, upstream):
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY, CIRCUIT_RETRY_MAX_ATTEMPTS=1,
                           CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000,
                           CIRCUIT_BREAKER_MINIMUM_CALLS=10_000).start()
    yield server
    server.stop()


def _key(gateway, name="tight", limit=LIMIT_USD) -> str:
    return live_key(gateway, name, daily_limit_usd=limit)


def _post(gateway, secret, body, **kwargs) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {secret}"}, timeout=30, **kwargs)


def _spent(gateway, name="tight") -> int:
    rows = [r for r in gateway.records(expect=0) if r["key_name"] == name]
    return sum(r["cost_micros"] or 0 for r in rows)


def _fire(gateway, secret, body, times) -> list[int]:
    statuses = [_post(gateway, secret, body).status_code for _ in range(times)]
    gateway.records(expect=times, timeout=10)
    return statuses


def test_n_choices_are_reserved_for_every_choice(gateway, upstream):
    upstream.default = Behaviour(honour_n=True, reply=" ".join(["word"] * 20))
    secret = _key(gateway)
    body = {"model": "gpt-4o-mini", "messages": HELLO, "n": 50, "max_tokens": 20}
    statuses = _fire(gateway, secret, body, 10)
    assert 200 in statuses and 429 in statuses, statuses
    assert _spent(gateway) <= LIMIT_MICROS


@pytest.mark.parametrize("n", ["50", "50.0", "5_0", " +50 "])
def test_n_sent_as_a_string_is_reserved_as_a_lax_upstream_reads_it(gateway, upstream, n):
    # The fake reads n with pydantic in lax mode, as vLLM does: each of these is 50 choices.
    upstream.default = Behaviour(honour_n=True, reply=" ".join(["word"] * 20))
    secret = _key(gateway)
    body = {"model": "gpt-4o-mini", "messages": HELLO, "n": n, "max_tokens": "20"}
    statuses = _fire(gateway, secret, body, 10)
    assert 200 in statuses and 429 in statuses, statuses
    assert _spent(gateway) <= LIMIT_MICROS


def test_an_absurd_n_is_refused_with_a_message_of_a_sane_length(gateway, upstream):
    secret = _key(gateway)
    body = {"model": "gpt-4o-mini", "messages": HELLO, "n": 1e300, "max_tokens": 20}
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert answer.status_code == 429
    error = answer.json()["error"]
    assert error["code"] == "quota_exceeded" and "over $1,000,000,000,000" in error["message"]
    assert len(error["message"]) < 400
    assert upstream.calls == 0


def test_the_larger_output_knob_is_reserved(gateway, upstream):
    # vLLM honours max_completion_tokens where Circuit once reserved max_tokens.
    upstream.default = Behaviour(reply=LONG_REPLY)
    secret = _key(gateway)
    body = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 1,
            "max_completion_tokens": 2_000}
    statuses = _fire(gateway, secret, body, 5)
    assert statuses[0] == 200 and 429 in statuses, statuses
    assert _spent(gateway) <= LIMIT_MICROS


def test_tools_are_part_of_the_prompt_bound(gateway, upstream):
    secret = _key(gateway)
    tools = [{"type": "function", "function": {
        "name": f"tool_{i}", "description": "Looks a thing up. " * 110,
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
        for i in range(20)]
    assert len(orjson.dumps(tools)) > 40_000
    body = {"model": "gpt-4o-mini", "messages": HELLO, "tools": tools, "max_tokens": 20}
    statuses = _fire(gateway, secret, body, 5)
    assert statuses[0] == 200, "the exact count fits where the byte bound would not"
    assert 429 in statuses
    assert _spent(gateway) <= LIMIT_MICROS
    rows = [r for r in gateway.records(expect=0) if r["status"] == "ok"]
    assert all(r["usage_anomaly"] is None for r in rows), "the bound covered what was billed"


def test_a_refusal_is_never_caused_by_the_slack_of_the_byte_bound(gateway, upstream):
    # 2,000 tokens of "hello " is 12,000 bytes: the byte bound (~$0.0018 of input) would not
    # fit in $0.001, the exact count ($0.0003) does.
    secret = _key(gateway, limit=0.001)
    body = {"model": "gpt-4o-mini", "max_tokens": 20,
            "messages": [{"role": "user", "content": "hello " * 2_000}]}
    assert _post(gateway, secret, body).status_code == 200


def test_a_stream_past_its_reservation_is_cut_at_the_bound(gateway, upstream):
    # At a model's pace (a word every 2 ms), not one burst.
    upstream.default = Behaviour(reply=LONG_REPLY, ignore_max_tokens=True, chunk_delay=0.002)
    secret = _key(gateway)
    body = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 20, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {secret}"}) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    error = orjson.loads(events[-2][6:])["error"]
    assert error["code"] == "upstream_overrun"
    delivered = "".join(
        (choice.get("delta") or {}).get("content") or ""
        for event in events[:-2] for choice in orjson.loads(event[6:]).get("choices", []))
    assert len(delivered.split()) <= 20 + 32, "cut at the bound, not thousands of words later"
    row = gateway.record(response.headers["x-request-id"])
    assert (row["status"], row["error_code"]) == ("failed", "upstream_overrun")
    # Charged for what the upstream had sent when it was cut (one read past the bound at most).
    assert row["tokens_output"] < 500
    assert _spent(gateway) <= LIMIT_MICROS
    calls, failures = gateway.gateway.breakers["openai"].failures_in_window()
    assert failures == 1, "the breaker counts an upstream that broke its contract"


def test_a_json_answer_past_its_bound_is_recorded_as_reported_and_flagged(gateway, upstream):
    upstream.default = Behaviour(reply=LONG_REPLY, ignore_max_tokens=True)
    secret = _key(gateway)
    response = _post(gateway, secret, {"model": "gpt-4o-mini", "messages": HELLO,
                                       "max_tokens": 20})
    assert response.status_code == 200
    row = gateway.record(response.headers["x-request-id"])
    assert row["tokens_output"] == 2_000, "recorded truthfully"
    assert row["usage_anomaly"].startswith("output_over_bound")
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'circuit_usage_anomalies_total{kind="output_over_bound",provider="openai"} 1.0' \
        in metrics


def test_an_overrun_is_booked_up_to_the_limit_and_never_past_it(gateway, upstream):
    # 99,000,000 prompt tokens is under the plausibility cap: once $6,187.50 of debt.
    upstream.default = Behaviour(usage={"prompt_tokens": 99_000_000, "completion_tokens": 5,
                                        "total_tokens": 99_000_005})
    secret = _key(gateway)
    body = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 20}
    first = _post(gateway, secret, body)
    assert first.status_code == 200
    row = gateway.record(first.headers["x-request-id"])
    assert row["usage_anomaly"].startswith("input_over_bound")
    later = [_post(gateway, secret, body).status_code for _ in range(4)]
    assert later == [429] * 4, "the key's day is spent: nothing more goes upstream"
    store = SQLiteStore(gateway.db_path)
    try:
        assert store.granted_budget("tight", utc_day()) <= LIMIT_MICROS
    finally:
        store.close()


def test_usage_far_above_a_local_count_of_the_text_is_flagged(gateway, upstream):
    upstream.default = Behaviour(usage={"prompt_tokens": 10, "completion_tokens": 900,
                                        "total_tokens": 910})
    secret = _key(gateway, limit=1)  # room for the model's whole output cap
    response = _post(gateway, secret, {"model": "gpt-4o-mini", "messages": HELLO})
    assert response.status_code == 200
    row = gateway.record(response.headers["x-request-id"])
    assert row["usage_anomaly"].startswith("output_above_local_count")
    assert row["tokens_output"] == 900


def test_honest_usage_is_not_flagged(gateway, upstream):
    secret = _key(gateway)
    for stream in (False, True):
        response = _post(gateway, secret, {"model": "gpt-4o-mini", "messages": HELLO,
                                           "stream": stream, "max_tokens": 50})
        assert response.status_code == 200
    rows = gateway.records(expect=2)
    assert [r["usage_anomaly"] for r in rows] == [None, None]


# -- models without a price ------------------------------------------------------------------

@pytest.mark.parametrize("model", ["ft:gpt-4o-mini:acme::abc123", "my-private-model"])
def test_an_unpriced_model_is_refused_for_a_key_with_a_limit(gateway, upstream, model):
    secret = _key(gateway)
    calls = upstream.calls
    response = _post(gateway, secret, {"model": model, "messages": HELLO})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "model_not_priced"
    assert model in error["message"] and f'[prices."{model}"]' in error["message"]
    assert upstream.calls == calls, "nothing went upstream"


def test_an_unpriced_model_is_served_to_a_key_without_a_limit(gateway, upstream):
    secret = _key(gateway, name="open", limit=-1)  # exempt from the default limit
    response = _post(gateway, secret, {"model": "my-private-model", "messages": HELLO})
    assert response.status_code == 200
    assert gateway.record(response.headers["x-request-id"])["cost_micros"] is None


def test_models_the_table_lacks_are_priced_from_the_catalog(gateway, upstream):
    secret = _key(gateway, limit=5)
    response = _post(gateway, secret, {"model": "o1-pro", "messages": HELLO,
                                       "max_completion_tokens": 20})
    assert response.status_code == 200
    assert gateway.record(response.headers["x-request-id"])["cost_micros"] > 0


def test_a_fallback_price_lets_unpriced_models_through(tmp_path, upstream):
    (tmp_path / "circuit.toml").write_text('[prices."*"]\ninput = 1\noutput = 2\n')
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY).start()
    try:
        secret = _key(server)
        response = _post(server, secret, {"model": "my-private-model", "messages": HELLO,
                                          "max_tokens": 5})
        assert response.status_code == 200
        assert server.record(response.headers["x-request-id"])["cost_micros"] > 0
    finally:
        server.stop()


def test_the_mock_serves_any_model_to_a_budgeted_key(mock_gateway):
    response = httpx.post(mock_gateway.url + "/v1/chat/completions", timeout=10,
                          json={"model": "mock-echo", "messages": HELLO},
                          headers={"Authorization": "Bearer sk-test-client-key-0123456789"})
    assert response.status_code == 200
