"""SQLite side of protection: budget leases and breaker state, shared by every process."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import astuple

from circuit.store.protection_rows import (
    BREAKER_STATE_COLUMNS,
    BreakerCommand,
    BreakerEventRow,
    BreakerStateRow,
    upsert_breaker_state,
)
from circuit.store.timestamps import utc_now

_UPSERT_STATE = upsert_breaker_state("?")


class SQLiteProtection:
    """Mixed into SQLiteStore; needs its `connection()`."""

    def connection(self) -> sqlite3.Connection:  # provided by SQLiteStore
        raise NotImplementedError

    def lease_budget(self, key_name: str, day: str, want: int, need: int,
                     limit: int) -> tuple[int, int]:
        conn = self.connection()
        # IMMEDIATE: the write lock is taken before reading, so the check and the grant are
        # one atomic step across every process on this file.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO budget_ledger (key_name, day, granted_micros, updated_at) "
                         "VALUES (?, ?, 0, ?) ON CONFLICT DO NOTHING", (key_name, day, utc_now()))
            total = conn.execute("SELECT granted_micros FROM budget_ledger "
                                 "WHERE key_name = ? AND day = ?", (key_name, day)).fetchone()[0]
            granted = min(want, limit - total)
            if granted < need:
                conn.execute("COMMIT")
                return 0, total
            conn.execute("UPDATE budget_ledger SET granted_micros = granted_micros + ?, "
                         "updated_at = ? WHERE key_name = ? AND day = ?",
                         (granted, utc_now(), key_name, day))
            conn.execute("COMMIT")
            return granted, total + granted
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def return_budget(self, key_name: str, day: str, amount: int) -> None:
        self.connection().execute(
            "UPDATE budget_ledger SET granted_micros = max(0, granted_micros - ?), updated_at = ? "
            "WHERE key_name = ? AND day = ?", (amount, utc_now(), key_name, day))

    def granted_budget(self, key_name: str, day: str) -> int:
        row = self.connection().execute(
            "SELECT granted_micros FROM budget_ledger WHERE key_name = ? AND day = ?",
            (key_name, day)).fetchone()
        return row[0] if row else 0

    def save_breakers(self, events: Sequence[BreakerEventRow],
                      states: Sequence[BreakerStateRow]) -> None:
        """Append state changes and replace the current states, in one transaction."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO breaker_events (provider, holder, from_state, "
                             "to_state, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                             [astuple(e) for e in events])
            conn.executemany(_UPSERT_STATE, [astuple(s) for s in states])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def breaker_states(self) -> list[BreakerStateRow]:
        rows = self.connection().execute(
            f"SELECT {', '.join(BREAKER_STATE_COLUMNS)} FROM breaker_state "
            "ORDER BY provider, holder")
        return [BreakerStateRow(*row) for row in rows]

    def breaker_events(self, provider: str | None = None,
                       limit: int = 50) -> list[BreakerEventRow]:
        where, params = ("WHERE provider = ?", (provider,)) if provider else ("", ())
        rows = self.connection().execute(
            f"SELECT provider, holder, from_state, to_state, reason, at FROM breaker_events "
            f"{where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [BreakerEventRow(*row) for row in rows]

    def add_breaker_command(self, provider: str, action: str) -> int:
        cursor = self.connection().execute(
            "INSERT INTO breaker_commands (provider, action, created_at) VALUES (?, ?, ?)",
            (provider, action, utc_now()))
        return cursor.lastrowid

    def breaker_commands_after(self, after_id: int) -> list[BreakerCommand]:
        rows = self.connection().execute(
            "SELECT id, provider, action, created_at FROM breaker_commands WHERE id > ? "
            "ORDER BY id", (after_id,))
        return [BreakerCommand(*row) for row in rows]

    def last_breaker_command_id(self) -> int:
        return self.connection().execute(
            "SELECT coalesce(max(id), 0) FROM breaker_commands").fetchone()[0]
