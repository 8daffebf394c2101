"""SQLite storage: the embedded default, one file, WAL so the CLI and gateways share it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from circuit.store import sqlite_space
from circuit.store.base import KeyExists, KeyNotFound
from circuit.store.errors import (
    NotCircuitDatabase,
    SchemaOutdated,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    translating,
)
from circuit.store.migrations import apply_pending
from circuit.store.pruning import PruningQueries
from circuit.store.records import KEY_COLUMNS, REQUEST_COLUMNS, KeyRow, RequestRecord, request_row
from circuit.store.rollups import SOURCE_COLUMNS, UPSERT, source, tally, upsert_rows
from circuit.store.sqlite_protection import SQLiteProtection
from circuit.store.sqlite_reports import SQLiteReports
from circuit.store.timestamps import utc_now

# A None bound as a parameter (a record has a dozen: no error, no partial text …) is not of a
# base type, so CPython's sqlite3 looks it up as an adapter (two attribute lookups that raise
# and clear AttributeError) before binding NULL: a fifth of a record's insert. Registered as
# its own adapter, None is found in one dict lookup; `{}.get` is a C function returning None.
sqlite3.register_adapter(type(None), {}.get)

# Idempotent: a record already in (its commit failed ambiguously, a journal replayed again)
# is not inserted twice.
_INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)}) ON CONFLICT (record_key) DO NOTHING"
)
_INSERTED_SINCE = f"SELECT {', '.join(SOURCE_COLUMNS)} FROM requests WHERE id > ?"
_MARK_REPLAYED = ("INSERT INTO journal_replays (file, byte_offset, replayed_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (file) DO UPDATE SET byte_offset = excluded.byte_offset, "
                  "replayed_at = excluded.replayed_at")
_KEY_FIELDS = KEY_COLUMNS


class _SQLiteSchema:
    dialect = "sqlite"
    id_column = "id INTEGER PRIMARY KEY"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str) -> None:
        self._conn.execute(sql)

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        self._conn.executemany(sql, params)

    def rows(self, sql: str) -> Iterator[tuple]:
        cursor = self._conn.cursor()
        cursor.row_factory = None
        yield from cursor.execute(sql)


def sqlite_error(exc: BaseException) -> StoreError | None:
    """sqlite3's exceptions as the store's typed errors (None: not a database failure)."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "no such table" in text and "request_rollups" not in text:
            return NotCircuitDatabase(f"not a Circuit database ({text})")
        if "no such column" in text or "no such table" in text:
            return SchemaOutdated(f"an older schema ({text}); starting a gateway migrates it")
        return StoreUnavailable(text)
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | OverflowError):
        return StoreRejected(text)
    if isinstance(exc, sqlite3.DatabaseError):
        if "file is not a database" in text:
            return NotCircuitDatabase(text)
        return StoreUnavailable(text)
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(text)
    if isinstance(exc, OSError):
        return StoreUnavailable(exc.strerror or text)
    return None


@translating(sqlite_error)
class SQLiteStore(SQLiteProtection, SQLiteReports, PruningQueries):
    """The Store interface on one SQLite file. Each thread gets its own connection."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *,
                 vacuum_below_bytes: int = sqlite_space.VACUUM_BELOW_BYTES) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._vacuum_below_bytes = vacuum_below_bytes

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- connections -------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit, so a reader never holds a lock.
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA journal_size_limit = {sqlite_space.WAL_LIMIT_BYTES}")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def exists(self) -> bool:
        """Whether the database file is there (the CLI must not create one by reading)."""
        return self.path.is_file()

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> None:
        conn = self.connection()
        # Before the first table: a new file is made in incremental-vacuum mode.
        sqlite_space.use_incremental_vacuum(conn, self.path, self._vacuum_below_bytes)
        conn.execute("PRAGMA journal_mode = WAL")
        # IMMEDIATE takes the write lock first, so workers starting together migrate once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            apply_pending(
                _SQLiteSchema(conn),
                lambda: {row[0] for row in conn.execute("SELECT number FROM circuit_migrations")},
                lambda step: conn.execute("INSERT INTO circuit_migrations VALUES (?, ?, ?)",
                                          (step.number, step.name, utc_now())))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def applied_migrations(self) -> list[int]:
        return [row[0] for row in self.connection().execute(
            "SELECT number FROM circuit_migrations ORDER BY number")]

    # -- request records ---------------------------------------------------------------------

    def insert_requests(self, records: Sequence[RequestRecord], *, again: bool = False) -> None:
        # Always idempotent here (an index probe per row), so `again` changes nothing.
        self._insert(records, None)

    def _insert(self, records: Sequence[RequestRecord],
                replayed: tuple[str, int] | None) -> None:
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0]
            inserted = conn.executemany(_INSERT_REQUEST, [request_row(r) for r in records])
            if records:
                # Rollups count what went in: all of the batch, unless some of it was in
                # already (written again after an ambiguous failure, or replayed twice).
                sources = (map(source, records) if inserted.rowcount == len(records) else
                           conn.execute(_INSERTED_SINCE, (before,)).fetchall())
                conn.executemany(UPSERT, upsert_rows(tally(sources)))
            if replayed is not None:
                conn.execute(_MARK_REPLAYED, (*replayed, utc_now()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def insert_replayed(self, records: Sequence[RequestRecord], file: str, offset: int) -> None:
        """Journaled records and how far their file is replayed, in one transaction."""
        self._insert(records, (file, offset))

    def journal_offset(self, file: str) -> int:
        row = self.connection().execute(
            "SELECT byte_offset FROM journal_replays WHERE file = ?", (file,)).fetchone()
        return row[0] if row else 0

    # -- retention (the statements are in circuit/store/pruning.py) ---------------------------

    def _change(self, sql: str, params: Sequence[object]) -> int:
        return self.connection().execute(sql, params).rowcount

    def release_space(self) -> int:
        return sqlite_space.release(self.connection(), self.path)

    def compact(self) -> int:
        return sqlite_space.compact(self.connection(), self.path)

    def recent_requests(self, limit: int = 10) -> list[dict]:
        rows = self.connection().execute(
            "SELECT * FROM requests ORDER BY timestamp DESC, id DESC LIMIT ?", (limit,))
        return [dict(row) for row in rows]

    def find_requests(self, request_id: str) -> list[dict]:
        rows = self.connection().execute(
            "SELECT * FROM requests WHERE request_id = ? ORDER BY id", (request_id,))
        return [dict(row) for row in rows]

    # -- keys --------------------------------------------------------------------------------

    def load_keys(self) -> list[KeyRow]:
        rows = self.connection().execute(f"SELECT {', '.join(_KEY_FIELDS)} FROM keys")
        return [KeyRow(**dict(row)) for row in rows]

    def keys_fingerprint(self) -> str:
        # Every change bumps a row's version, so the sum moves on any change, however quick.
        count, versions = self.connection().execute(
            "SELECT count(*), coalesce(sum(version), 0) FROM keys").fetchone()
        return f"{count}:{versions}"

    def add_key(self, row: KeyRow) -> None:
        record = asdict(row)
        record["created_at"] = record["created_at"] or utc_now()
        record["updated_at"] = utc_now()
        try:
            # Imported here: keys are added by the CLI; the gateway process never needs it
            # (sqlite-utils and what it imports weigh ~20 MB).
            import sqlite_utils

            sqlite_utils.Database(self.connection())["keys"].insert(record)
        except sqlite3.IntegrityError:
            raise KeyExists(row.name) from None

    def update_key(self, name: str, **changes: object) -> KeyRow:
        allowed = {"daily_limit_usd", "rpm", "tpm", "revoked_at"}
        if not changes or not set(changes) <= allowed:
            raise ValueError(f"cannot change {sorted(set(changes) - allowed) or 'nothing'}")
        assignments = ", ".join(f"{column} = ?" for column in changes)
        conn = self.connection()
        cursor = conn.execute(
            f"UPDATE keys SET {assignments}, updated_at = ?, version = version + 1 WHERE name = ?",
            (*changes.values(), utc_now(), name))
        if cursor.rowcount == 0:
            raise KeyNotFound(name)
        row = conn.execute(f"SELECT {', '.join(_KEY_FIELDS)} FROM keys WHERE name = ?",
                           (name,)).fetchone()
        return KeyRow(**dict(row))
