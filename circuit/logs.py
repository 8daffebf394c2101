"""Logging: handlers write from a thread, so a log line never blocks the event loop."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
from collections.abc import Sequence

from circuit.store.records import RequestRecord

request_log = logging.getLogger("circuit.requests")
_listener: logging.handlers.QueueListener | None = None


def configure_logging(level: str = "info") -> None:
    """Route `circuit.*` loggers through a queue to stderr; idempotent."""
    global _listener
    logger = logging.getLogger("circuit")
    logger.setLevel(level.upper())
    if _listener is not None:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log_queue: queue.SimpleQueue = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(log_queue, handler)
    _listener.start()
    logger.addHandler(logging.handlers.QueueHandler(log_queue))
    logger.propagate = False
    atexit.register(_listener.stop)


def log_requests(records: Sequence[RequestRecord]) -> None:
    """One line per request (runs on the record writer's thread): never the key, only its name."""
    if not request_log.isEnabledFor(logging.INFO):
        return
    for r in records:
        cost = "-" if r.cost_micros is None else f"{r.cost_micros / 1e6:.6f}"
        request_log.info(
            "request_id=%s key=%s model=%s provider=%s status=%s status_code=%s error=%s "
            "latency_ms=%.1f tokens_in=%d tokens_out=%d cost_usd=%s usage=%s",
            r.request_id, r.key_name or "-", r.model or "-", r.provider or "-", r.status,
            r.status_code, r.error_code or "-", r.latency_ms or 0.0, r.tokens_input,
            r.tokens_output, cost, r.usage_source or "-")
