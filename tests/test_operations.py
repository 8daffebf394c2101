"""Operating signals: /metrics, /healthz, /readyz and JSON logs."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from circuit.gateway.openai_surface import UNBOUNDED
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

HELLO = [{"role": "user", "content": "metrics"}]


def _samples(gateway, **headers) -> dict:
    response = httpx.get(gateway.url + "/metrics", headers=headers)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, labels[k]) in ls for k in labels))


def _wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_metrics_count_requests_tokens_cost_and_latency(mock_gateway):
    before = _samples(mock_gateway)
    mock_gateway.client().chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    list(mock_gateway.client().chat.completions.create(model="gpt-4o-mini", messages=HELLO,
                                                       stream=True))
    labels = dict(key="config-1", model="gpt-4o-mini", provider="mock")

    def counted():
        after = _samples(mock_gateway)
        return (_value(after, "circuit_requests_total", status="ok", **labels)
                - _value(before, "circuit_requests_total", status="ok", **labels)) == 2

    assert _wait_for(counted)
    after = _samples(mock_gateway)
    assert _value(after, "circuit_tokens_total", direction="output", **labels) > \
        _value(before, "circuit_tokens_total", direction="output", **labels)
    assert _value(after, "circuit_cost_usd_total", **labels) > \
        _value(before, "circuit_cost_usd_total", **labels)
    assert _value(after, "circuit_request_duration_seconds_count", stream="true") >= 1
    assert _value(after, "circuit_time_to_first_token_seconds_count", stream="true") >= 1


def test_metrics_show_live_gauges_and_no_dropped_records(mock_gateway):
    samples = _samples(mock_gateway)
    assert _value(samples, "circuit_dropped_records") == 0
    assert ("circuit_in_flight_requests", ()) in samples
    assert ("circuit_open_streams", ()) in samples
    assert ("circuit_record_queue_depth", ()) in samples
    assert _value(samples, "circuit_breaker_state", provider="mock", state="closed") == 1


def test_unknown_model_names_share_one_label(mock_gateway):
    for name in ("made-up-1", "made-up-2"):
        mock_gateway.client().chat.completions.create(model=name, messages=HELLO)
    assert _wait_for(lambda: _value(_samples(mock_gateway), "circuit_requests_total",
                                    model="other") >= 2)
    assert not any("made-up" in str(labels) for _, labels in _samples(mock_gateway))


def test_metrics_count_retries_and_fallbacks(tmp_path, upstream):
    (tmp_path / "circuit.toml").write_text(f"""
provider = "openai"
[providers.openai]
kind = "openai"
base_url = "{upstream.base_url}"
api_key_env = "K"
backoff_initial = 0.001
[providers.backup]
kind = "mock"
[routes]
"gpt-4o" = ["openai:gpt-4o", "backup:gpt-4o"]
""")
    server = GatewayServer(tmp_path, K="sk-test-upstream").start()
    try:
        upstream.default = Behaviour(status=500)
        server.client().chat.completions.create(model="gpt-4o", messages=HELLO)
        assert _wait_for(lambda: _value(_samples(server), "circuit_fallbacks_total",
                                        provider="backup") == 1)
        samples = _samples(server)
        assert _value(samples, "circuit_upstream_attempts_total", provider="openai",
                      outcome="error") == 3
        assert _value(samples, "circuit_upstream_retries_total", provider="openai") == 2
        assert _value(samples, "circuit_upstream_attempts_total", provider="backup",
                      outcome="ok") == 1
    finally:
        server.stop()


@pytest.fixture
def guarded_gateway(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock",
                           CIRCUIT_METRICS_TOKEN="metrics-token-123").start()
    yield server
    server.stop()


def test_protected_metrics_refuse_calls_without_the_token(guarded_gateway):
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Bearer {CLIENT_KEY}"}):
        response = httpx.get(guarded_gateway.url + "/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    assert _samples(guarded_gateway, Authorization="Bearer metrics-token-123")


def test_metrics_never_show_a_key(guarded_gateway):
    guarded_gateway.client().chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    text = httpx.get(guarded_gateway.url + "/metrics",
                     headers={"Authorization": "Bearer metrics-token-123"}).text
    assert CLIENT_KEY not in text and "metrics-token-123" not in text


def test_readyz_reports_each_check_when_ready(mock_gateway):
    response = httpx.get(mock_gateway.url + "/readyz")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ready"
    assert set(body["checks"]) == {"database", "writer", "providers"}
    assert all(check["ok"] for check in body["checks"].values())
    assert response.headers["x-request-id"]


def test_readyz_is_503_when_the_database_is_gone(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock").start()
    try:
        server.db_path.unlink()
        response = httpx.get(server.url + "/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not_ready" and body["checks"]["database"]["ok"] is False
        assert body["checks"]["writer"]["ok"] is True
    finally:
        server.stop()


def test_json_logs_are_one_object_per_line_with_the_request_id(tmp_path, capfd):
    server = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_LOG_FORMAT="json",
                           CIRCUIT_LOG_LEVEL="info").start()
    try:
        response = httpx.post(server.url + "/v1/chat/completions",
                              headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                       "x-request-id": "json-log-check"},
                              json={"model": "gpt-4o-mini", "messages": HELLO})
        assert response.status_code == 200
        server.record("json-log-check")
        time.sleep(0.2)
    finally:
        server.stop()
    lines = [line for line in capfd.readouterr().err.splitlines() if "json-log-check" in line]
    entry = orjson.loads(lines[0])
    assert entry["request_id"] == "json-log-check" and entry["status"] == "ok"
    assert entry["key"] == "config-1" and CLIENT_KEY not in lines[0]


def test_metrics_label_requests_tokens_and_cost_with_their_door(mock_gateway):
    mock_gateway.client().embeddings.create(model="text-embedding-3-small", input="hi there")
    labels = dict(model="text-embedding-3-small", provider="mock", api="embeddings")
    assert _wait_for(lambda: _value(_samples(mock_gateway), "circuit_requests_total",
                                    status="ok", **labels) >= 1)
    samples = _samples(mock_gateway)
    assert _value(samples, "circuit_tokens_total", direction="input", **labels) >= 2
    assert _value(samples, "circuit_cost_usd_total", **labels) > 0
    doors = {dict(ls).get("api") for (n, ls) in samples if n == "circuit_requests_total"}
    known = {"chat", "messages", "count_tokens", "responses", "embeddings", "completions",
             "chat_store", "models", "moderations", *UNBOUNDED}
    assert "embeddings" in doors and doors <= known  # door names the gateway gives, no others
