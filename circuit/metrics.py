"""GatewayMetrics: Prometheus metrics for one gateway process.

Per-request metrics are derived from the request records on the record writer's thread, so
the request path pays nothing for them; live gauges (in flight, open streams, queue depth,
breakers) are read from the gateway when /metrics is scraped.

A model name comes from the client, so it is a label only when the gateway knows the model
(priced or routed); any other is `other` — a client cannot grow the label set at will. The
`api` label is the door a request came in by (`chat`, `embeddings`, `completions`, …): a
name the gateway gives, one per door, so it adds a handful of series at most.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

import orjson
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from circuit.money import usd
from circuit.store.records import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BREAKER_STATES = ("closed", "half_open", "open")


class GatewayMetrics:
    def __init__(self, known_model: Callable[[str], bool]) -> None:
        self._known_model = known_model
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("circuit_requests", "Requests handled, by door (api).",
                                ["key", "model", "provider", "api", "status"], registry=r)
        self.latency = BatchHistogram(
            "circuit_request_duration_seconds",
            "Time from a request's arrival to its end in the gateway.", ["provider", "stream"])
        self.ttft = BatchHistogram(
            "circuit_time_to_first_token_seconds",
            "Time from a request's arrival to its first byte to the client.",
            ["provider", "stream"])
        r.register(self.latency)
        r.register(self.ttft)
        self.tokens = Counter("circuit_tokens", "Tokens, by direction (input or output).",
                              ["key", "model", "provider", "api", "direction"], registry=r)
        self.cost = Counter("circuit_cost_usd", "Cost in USD of priced requests.",
                            ["key", "model", "provider", "api"], registry=r)
        self.attempts = Counter("circuit_upstream_attempts", "Upstream calls, by outcome.",
                                ["provider", "outcome"], registry=r)
        self.retries = Counter("circuit_upstream_retries",
                               "Upstream calls that repeated a failed call to one provider.",
                               ["provider"], registry=r)
        self.anomalies = Counter("circuit_usage_anomalies",
                                 "Requests whose reported usage cannot be right (past the "
                                 "request's bound, or far above a local count).",
                                 ["provider", "kind"], registry=r)
        self.fallbacks = Counter("circuit_fallbacks",
                                 "Requests served by a target after an earlier one failed.",
                                 ["provider"], registry=r)

    def model_label(self, model: str | None) -> str:
        if not model:
            return "-"
        return model if self._known_model(model) else "other"

    def observe(self, records: Sequence[RequestRecord]) -> None:
        """Count a batch of finished requests (runs on the record writer's thread).

        The batch is summed first and each labelled series touched once: a `labels()` lookup
        takes a lock and hashes its tuple, and a batch of a busy second holds hundreds of
        requests on a handful of series (the GIL this thread holds, the event loop waits for).
        """
        counts: dict[tuple, dict[tuple, float]] = {}

        def add(metric: Counter, labels: tuple, amount: float = 1) -> None:
            series = counts.setdefault(metric, {})
            series[labels] = series.get(labels, 0) + amount

        timings: dict[tuple, list[float]] = {}
        for r in records:
            key, provider, api = r.key_name or "-", r.provider or "-", r.api or "-"
            model = self.model_label(r.model)
            stream = "true" if r.stream else "false"
            add(self.requests, (key, model, provider, api, r.status))
            if r.latency_ms is not None:
                timings.setdefault((self.latency, provider, stream), []).append(
                    r.latency_ms / 1000)
            if r.ttfb_ms is not None:
                timings.setdefault((self.ttft, provider, stream), []).append(r.ttfb_ms / 1000)
            if r.tokens_input or r.tokens_output:
                add(self.tokens, (key, model, provider, api, "input"), r.tokens_input)
                add(self.tokens, (key, model, provider, api, "output"), r.tokens_output)
            if r.cost_micros:
                add(self.cost, (key, model, provider, api), r.cost_micros)
            if r.usage_anomaly:
                add(self.anomalies, (provider, r.usage_anomaly.partition(":")[0]))
            self._observe_attempts(r, add)
        for metric, series in counts.items():
            for labels, amount in series.items():
                # Cost is summed in micro-dollars and turned into dollars once per series.
                metric.labels(*labels).inc(usd(amount) if metric is self.cost else amount)
        for (histogram, *labels), values in timings.items():
            histogram.observe_many(tuple(labels), values)

    def _observe_attempts(self, r: RequestRecord,
                          add: Callable[[Counter, tuple], None]) -> None:
        if not r.attempt_errors:
            # Nothing failed (nearly every request): at most the one call that answered.
            if r.attempts and r.provider:
                add(self.attempts, (r.provider, "ok"))
            return
        failures = orjson.loads(r.attempt_errors)
        tried = [f for f in failures if f.get("error") != "breaker_open"]
        for failure in tried:
            add(self.attempts, (failure.get("provider") or "-", "error"))
        if r.attempts > len(tried) and r.provider:
            add(self.attempts, (r.provider, "ok"))
        seen: set[tuple] = set()
        calls = [(f.get("provider"), f.get("model")) for f in tried]
        if r.attempts > len(tried):
            calls.append((r.provider, r.upstream_model))
        for call in calls:
            if call in seen:
                add(self.retries, (call[0] or "-",))
            seen.add(call)
        if failures and r.attempts > len(tried) and (failures[0].get("provider"),
                                                     failures[0].get("model")) != (
                r.provider, r.upstream_model):
            add(self.fallbacks, (r.provider or "-",))

    def add_live(self, collect: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        """Gauges computed at scrape time."""
        self.registry.register(_Live(collect))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class BatchHistogram(Collector):
    """A histogram counted a batch at a time in plain numbers, rendered at scrape time as
    prometheus_client renders its own (the same buckets, sums and counts).

    prometheus_client's Histogram takes a lock and walks its buckets in Python for every value:
    two values a request, most of what the metrics cost the writer thread. Here a batch takes
    the lock once and each value is one C-level bisect."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str],
                 buckets: Sequence[float] = _LATENCY_BUCKETS) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._bounds = [float(b) for b in buckets]
        self._edges = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()  # observed on the writer thread, read at scrape time

    def observe_many(self, labels: tuple[str, ...], values: Iterable[float]) -> None:
        bounds = self._bounds
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = ([0] * (len(bounds) + 1), [0.0])
            counts, total = series
            for value in values:
                counts[bisect_left(bounds, value)] += 1  # the first bucket with value <= le
                total[0] += value

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._labels)]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        with self._lock:
            series = [(labels, list(counts), total[0])
                      for labels, (counts, total) in self._series.items()]
        for labels, counts, total in series:
            cumulative, buckets = 0, []
            for edge, count in zip(self._edges, counts, strict=True):
                cumulative += count
                buckets.append((edge, cumulative))
            family.add_metric(list(labels), buckets, total)
        yield family


class _Live(Collector):
    def __init__(self, collect: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._collect()

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
