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


def _exposition(registry) -> list[str]:
    from prometheus_client import generate_latest

    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_a_batch_histogram_renders_as_prometheus_clients_own_histogram():
    from prometheus_client import CollectorRegistry, Histogram

    from circuit.metrics import BatchHistogram

    # On a bucket's bound (it counts in that bucket), between bounds, past the last, zero.
    values = [0.0, 0.005, 0.0051, 0.1, 0.7, 1.0, 2.5, 60.0, 119.9, 120.0, 500.0]
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("circuit_request_duration_seconds", "Time in the gateway.",
                          ["provider", "stream"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                                   60, 120), registry=theirs)
    batch = BatchHistogram("circuit_request_duration_seconds", "Time in the gateway.",
                           ["provider", "stream"])
    ours.register(batch)
    for value in values:
        reference.labels("openai", "false").observe(value)
    reference.labels("backup", "true").observe(3.0)
    batch.observe_many(("openai", "false"), values[:4])
    batch.observe_many(("openai", "false"), values[4:])
    batch.observe_many(("backup", "true"), [3.0])
    assert _exposition(ours) == _exposition(theirs)
