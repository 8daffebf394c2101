"""The rows the store keeps: what the gateway writes and the CLI reads."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, fields
from typing import Literal

from circuit.money import usd

RequestStatus = Literal["ok", "failed", "rejected", "client_disconnected"]

# A random per-process prefix and a counter: unique across processes and restarts.
_KEY_PREFIX = "rec_" + os.urandom(8).hex()
_KEY_COUNTER = itertools.count(1)


def new_record_key() -> str:
    """A key no other record has: what makes writing a record twice a no-op."""
    return f"{_KEY_PREFIX}{next(_KEY_COUNTER):x}"


@dataclass(slots=True)
class RequestRecord:
    """One chat-completion request, whatever became of it."""

    request_id: str
    timestamp: str  # ISO-8601 UTC with milliseconds, e.g. 2026-11-26T03:44:56.123Z
    key_name: str | None = None
    provider: str | None = None
    model: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    status_code: int = 0
    status: RequestStatus = "ok"
    error_code: str | None = None
    error_message: str | None = None
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cached: int = 0
    cost_micros: int | None = None  # None: the model has no price
    usage_source: str | None = None  # provider | local
    finish_reason: str | None = None
    latency_ms: float | None = None
    ttfb_ms: float | None = None
    attempts: int = 0
    partial_text: str | None = None
    attempt_errors: str | None = None  # JSON: why each earlier attempt failed
    #: Why the upstream's usage cannot be right (past the request's bound, or far above a
    #: local count of the same text); NULL when nothing is amiss.
    usage_anomaly: str | None = None
    #: The door the request came in by: the API the client spoke ('chat': chat completions).
    api: str = "chat"
    #: The wire format sent upstream ('chat', 'messages', 'responses', 'embeddings', …):
    #: the door's own when passed through, another when translated.
    upstream_api: str | None = None
    #: Unique per record (the request id is the client's choice and may repeat): a batch
    #: whose commit failed ambiguously, or a journal replayed twice, is inserted once.
    record_key: str = field(default_factory=new_record_key)
    #: Not stored: set when tokens must be counted locally before the row is written.
    local_count: object | None = None
    #: Not stored: (model, output text, output tokens reported) to check against a local
    #: count on the writer thread.
    verify_output: tuple[str, str, int] | None = None

    @property
    def cost_usd(self) -> float | None:
        return None if self.cost_micros is None else usd(self.cost_micros)


#: Column order of the `requests` table as the writer inserts it.
_TRANSIENT = frozenset({"local_count", "verify_output"})
REQUEST_COLUMNS: tuple[str, ...] = (
    *(f.name for f in fields(RequestRecord) if f.name not in _TRANSIENT),
    "cost_usd",
)


def request_row(record: RequestRecord) -> tuple:
    """The record as a tuple in `REQUEST_COLUMNS` order."""
    return (
        record.request_id, record.timestamp, record.key_name, record.provider, record.model,
        record.upstream_model, int(record.stream), record.status_code, record.status,
        record.error_code, record.error_message, record.tokens_input, record.tokens_output,
        record.tokens_cached, record.cost_micros, record.usage_source, record.finish_reason,
        record.latency_ms, record.ttfb_ms, record.attempts, record.partial_text,
        record.attempt_errors, record.usage_anomaly, record.api, record.upstream_api,
        record.record_key, record.cost_usd,
    )


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A client key as stored: never the secret, only its hash and a short prefix."""

    name: str
    key_hash: str
    key_prefix: str
    daily_limit_usd: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    created_at: str = ""
    revoked_at: str | None = None


#: Columns of `keys` a KeyRow is read from, in its field order: both stores select these.
KEY_COLUMNS = tuple(f.name for f in fields(KeyRow))
