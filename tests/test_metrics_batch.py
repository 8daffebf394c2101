"""GatewayMetrics counts a writer batch summed per series: the totals are those of counting
each record alone."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from circuit.metrics import GatewayMetrics
from circuit.store.records import RequestRecord


def _record(n: int, **fields) -> RequestRecord:
    base = dict(request_id=f"r{n}", timestamp="2026-12-02T00:00:00.000Z", key_name="team",
                provider="openai", model="gpt-4o-mini", upstream_model="gpt-4o-mini",
                status="ok", tokens_input=10, tokens_output=n, cost_micros=7,
                latency_ms=100.0 * n, ttfb_ms=10.0, attempts=1)
    return RequestRecord(**{**base, **fields})


def _samples(metrics: GatewayMetrics) -> dict[tuple, float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(metrics.render().decode())
            for sample in family.samples if not sample.name.endswith("_created")}


BATCH = [_record(1), _record(2), _record(3, api="messages"),
         _record(4, status="error", cost_micros=None, tokens_input=0, tokens_output=0,
                 attempts=2, attempt_errors='[{"provider": "openai", "model": "gpt-4o-mini",'
                                            ' "error": "upstream_error"}]')]


def test_a_batch_counts_what_each_record_counted_alone():
    together, alone = GatewayMetrics(lambda model: True), GatewayMetrics(lambda model: True)
    together.observe(BATCH)
    for record in BATCH:
        alone.observe([record])
    assert _samples(together) == _samples(alone)


def test_a_batch_sums_its_series():
    metrics = GatewayMetrics(lambda model: True)
    metrics.observe(BATCH)
    samples = _samples(metrics)
    chat = (("api", "chat"), ("key", "team"), ("model", "gpt-4o-mini"), ("provider", "openai"))
    assert samples[("circuit_requests_total", tuple(sorted((*chat, ("status", "ok")))))] == 2
    assert samples[("circuit_cost_usd_total", chat)] == 14 / 1_000_000
    assert samples[("circuit_tokens_total", tuple(sorted((*chat, ("direction", "output")))))] \
        == 3
    assert samples[("circuit_request_duration_seconds_count",
                    (("provider", "openai"), ("stream", "false")))] == 4
    assert samples[("circuit_upstream_retries_total", (("provider", "openai"),))] == 1
