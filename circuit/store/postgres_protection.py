"""PostgreSQL side of protection: budget leases and breaker state, shared by every replica."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple

import psycopg

from circuit.store.postgres_locks import COMMANDS_LOCK, LOCK_STATEMENT
from circuit.store.protection_rows import (
    BREAKER_STATE_COLUMNS,
    BreakerCommand,
    BreakerEventRow,
    BreakerStateRow,
    upsert_breaker_state,
)
from circuit.store.timestamps import utc_now

_ENSURE_LEDGER_ROW = ("INSERT INTO budget_ledger (key_name, day, granted_micros, updated_at) "
                      "VALUES (%(key)s, %(day)s, 0, %(now)s) ON CONFLICT DO NOTHING")

# One statement grants between `need` and `want` without letting the day's grants pass the
# limit. The sub-select locks the row and reads its latest committed value (READ COMMITTED
# re-reads a row it had to wait for), so concurrent leases from any number of replicas queue on
# that row lock and each sees the grants before it; returning the value before the grant too
# (PostgreSQL < 18 has no OLD in RETURNING) tells exactly how much was granted.
_LEASE = """
    UPDATE budget_ledger AS b
    SET granted_micros = o.granted_micros + LEAST(%(want)s, %(limit)s - o.granted_micros),
        updated_at = %(now)s
    FROM (SELECT key_name, day, granted_micros FROM budget_ledger
          WHERE key_name = %(key)s AND day = %(day)s FOR UPDATE) AS o
    WHERE b.key_name = o.key_name AND b.day = o.day
      AND LEAST(%(want)s, %(limit)s - o.granted_micros) >= %(need)s
    RETURNING o.granted_micros, b.granted_micros"""


_UPSERT_STATE = upsert_breaker_state("%s")


class PostgresProtection:
    """Mixed into PostgresStore; needs its `connection()`."""

    def connection(self) -> AbstractContextManager[psycopg.Connection]:  # from PostgresStore
        raise NotImplementedError

    def lease_budget(self, key_name: str, day: str, want: int, need: int,
                     limit: int) -> tuple[int, int]:
        params = {"key": key_name, "day": day, "want": want, "need": need, "limit": limit,
                  "now": utc_now()}
        with self.connection() as conn:
            # Both statements go in one round trip (pipeline mode, one implicit transaction).
            with conn.pipeline():
                conn.execute(_ENSURE_LEDGER_ROW, params)
                granted = conn.execute(_LEASE, params).fetchone()
            if granted is not None:
                before, after = granted
                return after - before, after
            # Refused: report the day's grants so far (for the refusal message only).
            total = conn.execute("SELECT granted_micros FROM budget_ledger "
                                 "WHERE key_name = %(key)s AND day = %(day)s", params).fetchone()
            return 0, total[0] if total else 0

    def return_budget(self, key_name: str, day: str, amount: int) -> None:
        with self.connection() as conn:
            conn.execute(
                "UPDATE budget_ledger SET granted_micros = GREATEST(0, granted_micros - %s), "
                "updated_at = %s WHERE key_name = %s AND day = %s",
                (amount, utc_now(), key_name, day))

    def granted_budget(self, key_name: str, day: str) -> int:
        with self.connection() as conn:
            row = conn.execute(
                "SELECT granted_micros FROM budget_ledger WHERE key_name = %s AND day = %s",
                (key_name, day)).fetchone()
        return row[0] if row else 0

    def save_breakers(self, events: Sequence[BreakerEventRow],
                      states: Sequence[BreakerStateRow]) -> None:
        """Append state changes and replace the current states, in one transaction."""
        with self.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            if events:
                cursor.executemany(
                    "INSERT INTO breaker_events (provider, holder, from_state, to_state, "
                    "reason, at) VALUES (%s, %s, %s, %s, %s, %s)", [astuple(e) for e in events])
            if states:
                cursor.executemany(_UPSERT_STATE, [astuple(s) for s in states])

    def breaker_states(self) -> list[BreakerStateRow]:
        with self.connection() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(BREAKER_STATE_COLUMNS)} FROM breaker_state "
                "ORDER BY provider, holder").fetchall()
        return [BreakerStateRow(*row) for row in rows]

    def breaker_events(self, provider: str | None = None,
                       limit: int = 50) -> list[BreakerEventRow]:
        where, params = ("WHERE provider = %s", (provider,)) if provider else ("", ())
        with self.connection() as conn:
            rows = conn.execute(
                f"SELECT provider, holder, from_state, to_state, reason, at FROM breaker_events "
                f"{where} ORDER BY id DESC LIMIT %s", (*params, limit)).fetchall()
        return [BreakerEventRow(*row) for row in rows]

    def add_breaker_command(self, provider: str, action: str) -> int:
        # Commands take turns until commit, so ids become visible in order and a replica that
        # has applied id N never misses a smaller one committed late (it asks for ids > N).
        with self.connection() as conn, conn.transaction():
            conn.execute(LOCK_STATEMENT, (COMMANDS_LOCK,))
            return conn.execute(
                "INSERT INTO breaker_commands (provider, action, created_at) "
                "VALUES (%s, %s, %s) RETURNING id", (provider, action, utc_now())).fetchone()[0]

    def breaker_commands_after(self, after_id: int) -> list[BreakerCommand]:
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT id, provider, action, created_at FROM breaker_commands WHERE id > %s "
                "ORDER BY id", (after_id,)).fetchall()
        return [BreakerCommand(*row) for row in rows]

    def last_breaker_command_id(self) -> int:
        with self.connection() as conn:
            return conn.execute(
                "SELECT coalesce(max(id), 0) FROM breaker_commands").fetchone()[0]
