"""Numbered schema migrations, applied in order on start by every store.

A migration is a function `mNNN_name(schema)` registered with `@migration`; it writes SQL that both
SQLite and PostgreSQL accept, asking `schema` for the few things that differ between them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


class Schema(Protocol):
    """What a migration may use: the dialect's words and a way to run SQL."""

    dialect: str  # "sqlite" | "postgres"

    def execute(self, sql: str) -> None: ...

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        """Run one statement (`?` placeholders) once per parameter tuple."""
        ...

    def rows(self, sql: str) -> Iterator[tuple]:
        """The rows of a query, streamed (a backfill over a big table must not hold them all)."""
        ...

    @property
    def id_column(self) -> str:
        """An auto-increment integer primary key column definition."""
        ...


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    apply: Callable[[Schema], None]


MIGRATIONS: list[Migration] = []

_LEDGER = ("CREATE TABLE IF NOT EXISTS circuit_migrations "
           "(number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")


def apply_pending(schema: Schema, applied: Callable[[], set[int]],
                  mark: Callable[[Migration], None]) -> None:
    """Apply, in order, every migration not yet applied; the caller holds the transaction and
    the lock that make this happen once however many processes start together."""
    schema.execute(_LEDGER)
    done = applied()
    for step in MIGRATIONS:
        if step.number not in done:
            step.apply(schema)
            mark(step)


def migration(fn: Callable[[Schema], None]) -> Callable[[Schema], None]:
    """Register `fn`, named `mNNN_description`, as migration number NNN."""
    match = re.fullmatch(r"m(\d{3})_(\w+)", fn.__name__)
    if not match:
        raise ValueError(f"migration {fn.__name__} must be named mNNN_description")
    number = int(match.group(1))
    if any(m.number == number for m in MIGRATIONS):
        raise ValueError(f"migration number {number} is taken")
    MIGRATIONS.append(Migration(number, match.group(2), fn))
    MIGRATIONS.sort(key=lambda m: m.number)
    return fn


def _double(schema: Schema) -> str:
    """A 64-bit float column: SQLite's REAL is one, PostgreSQL's REAL is only 32 bits (a key's
    $0.70 limit would read back as 0.699999988)."""
    return "DOUBLE PRECISION" if schema.dialect == "postgres" else "REAL"


@migration
def m001_requests_and_keys(schema: Schema) -> None:
    schema.execute(f"""
        CREATE TABLE requests (
            {schema.id_column},
            request_id TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            key_name TEXT,
            provider TEXT,
            model TEXT,
            upstream_model TEXT,
            stream INTEGER NOT NULL DEFAULT 0,
            status_code INTEGER NOT NULL,
            status TEXT NOT NULL,
            error_code TEXT,
            error_message TEXT,
            tokens_input INTEGER NOT NULL DEFAULT 0,
            tokens_output INTEGER NOT NULL DEFAULT 0,
            tokens_cached INTEGER NOT NULL DEFAULT 0,
            cost_micros BIGINT,
            usage_source TEXT,
            finish_reason TEXT,
            latency_ms {_double(schema)},
            ttfb_ms {_double(schema)},
            attempts INTEGER NOT NULL DEFAULT 0,
            partial_text TEXT,
            cost_usd {_double(schema)}
        )""")
    schema.execute("CREATE INDEX requests_timestamp ON requests (timestamp)")
    schema.execute("CREATE INDEX requests_key_timestamp ON requests (key_name, timestamp)")
    schema.execute("CREATE INDEX requests_request_id ON requests (request_id)")
    schema.execute(f"""
        CREATE TABLE keys (
            name TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            key_prefix TEXT NOT NULL,
            daily_limit_usd {_double(schema)},
            rpm INTEGER,
            tpm INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            revoked_at TEXT,
            version INTEGER NOT NULL DEFAULT 1
        )""")


@migration
def m002_budgets_and_breakers(schema: Schema) -> None:
    # Budget leases granted per key and UTC day: never more than the key's limit in total.
    schema.execute("""
        CREATE TABLE budget_ledger (
            key_name TEXT NOT NULL,
            day TEXT NOT NULL,
            granted_micros BIGINT NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (key_name, day)
        )""")
    schema.execute(f"""
        CREATE TABLE breaker_events (
            {schema.id_column},
            provider TEXT NOT NULL,
            holder TEXT NOT NULL,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        )""")
    schema.execute("CREATE INDEX breaker_events_provider_at ON breaker_events (provider, at)")
    # The current state of each provider's breaker in each gateway process (the holder).
    schema.execute("""
        CREATE TABLE breaker_state (
            provider TEXT NOT NULL,
            holder TEXT NOT NULL,
            state TEXT NOT NULL,
            opened_at TEXT,
            probe_at TEXT,
            calls_in_window INTEGER NOT NULL DEFAULT 0,
            failures_in_window INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (provider, holder)
        )""")
    # Operator commands (reset, open) that every gateway process applies once.
    schema.execute(f"""
        CREATE TABLE breaker_commands (
            {schema.id_column},
            provider TEXT NOT NULL,
            action TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""")


@migration
def m003_attempt_errors(schema: Schema) -> None:
    # Fallback and retries: why each attempt before the one that answered failed (JSON).
    schema.execute("ALTER TABLE requests ADD COLUMN attempt_errors TEXT")


@migration
def m004_usage_anomaly(schema: Schema) -> None:
    # An upstream whose usage broke its contract (past the request's bound, or far above a
    # local count of the same text): recorded as reported, and flagged here.
    schema.execute("ALTER TABLE requests ADD COLUMN usage_anomaly TEXT")


@migration
def m005_breaker_last_failure(schema: Schema) -> None:
    # Why a breaker opened, for the operator: the last failure's code and time.
    schema.execute("ALTER TABLE breaker_state ADD COLUMN last_failure TEXT")


@migration
def m006_journal_replays(schema: Schema) -> None:
    # How far each journal file of unwritten records has been replayed: the rows of a chunk
    # and its offset commit together, so a replay is never applied twice.
    schema.execute("""
        CREATE TABLE journal_replays (
            file TEXT PRIMARY KEY,
            byte_offset BIGINT NOT NULL,
            replayed_at TEXT NOT NULL
        )""")


@migration
def m007_record_keys(schema: Schema) -> None:
    # A commit that fails on a full disk may have landed all the same; with a unique key per
    # record, writing the batch again (or replaying its journal) cannot make a second row.
    schema.execute("ALTER TABLE requests ADD COLUMN record_key TEXT")
    schema.execute("CREATE UNIQUE INDEX requests_record_key ON requests (record_key)")


@migration
def m020_request_door(schema: Schema) -> None:
    # The API a request came in by (chat completions today; other doors later), so usage
    # can be told apart per door.
    schema.execute("ALTER TABLE requests ADD COLUMN api TEXT NOT NULL DEFAULT 'chat'")


@migration
def m021_request_rollups(schema: Schema) -> None:
    # Daily and monthly totals per key, model, provider and door, kept after retention
    # prunes the rows (circuit/store/rollups.py), with a latency histogram for percentiles.
    from circuit.store import latency_histogram, rollups

    big = "BIGINT NOT NULL DEFAULT 0"
    schema.execute(f"""
        CREATE TABLE request_rollups (
            span TEXT NOT NULL,
            day TEXT NOT NULL,
            key_name TEXT NOT NULL,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            api TEXT NOT NULL,
            requests {big},
            failed {big},
            rejected {big},
            client_disconnected {big},
            tokens_input {big},
            tokens_output {big},
            tokens_cached {big},
            cost_micros {big},
            unpriced {big},
            latency_sum_ms {_double(schema)} NOT NULL DEFAULT 0,
            {", ".join(f"{c} {big}" for c in latency_histogram.COLUMNS)},
            PRIMARY KEY (span, day, key_name, model, provider, api)
        )""")
    # The rows already there: one streamed pass, tallied in memory per group (a few
    # thousand groups a year), written once: measured 6 s per million rows on SQLite, 12 s on
    # PostgreSQL (2 busy cores), once, at the first start of the new version.
    groups = rollups.tally(schema.rows(
        f"SELECT {', '.join(rollups.SOURCE_COLUMNS)} FROM requests"))
    schema.executemany(rollups.UPSERT, rollups.upsert_rows(groups))


@migration
def m022_content_index(schema: Schema) -> None:
    # Content retention clears the text of old rows; this partial index holds only rows that
    # still have text, so each pruning batch finds its rows without walking cleared ones.
    schema.execute("CREATE INDEX requests_with_content ON requests (timestamp) "
                   "WHERE partial_text IS NOT NULL OR error_message IS NOT NULL")


@migration
def m023_upstream_api(schema: Schema) -> None:
    # The wire format that went upstream, next to the door it came in by: a Messages request
    # passed through to Anthropic and one translated to chat completions cost differently.
    schema.execute("ALTER TABLE requests ADD COLUMN upstream_api TEXT")
