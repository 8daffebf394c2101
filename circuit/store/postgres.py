"""PostgreSQL storage: one database that several gateway replicas and the CLI share.

The store is synchronous and called from threads (the record writer, `asyncio.to_thread`), so
it draws autocommit connections from a `psycopg_pool.ConnectionPool`: every statement is its
own short transaction unless a method opens one explicitly. Schema, rows and behaviour are
those of SQLiteStore; the same contract tests run against both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
from circuit.store.postgres_locks import LOCK_STATEMENT, MIGRATION_LOCK, REQUESTS_LOCK
from circuit.store.postgres_protection import PostgresProtection
from circuit.store.postgres_reports import PostgresReports, placeholders
from circuit.store.pruning import PruningQueries
from circuit.store.records import KEY_COLUMNS, REQUEST_COLUMNS, KeyRow, RequestRecord, request_row
from circuit.store.rollups import SOURCE_COLUMNS, UPSERT, source, tally, upsert_rows
from circuit.store.timestamps import utc_now

_COPY_REQUESTS = sql.SQL("COPY requests ({}) FROM STDIN").format(
    sql.SQL(", ").join(map(sql.Identifier, REQUEST_COLUMNS)))
_INSERT_AGAIN = sql.SQL(
    "INSERT INTO requests ({}) VALUES ({}) ON CONFLICT (record_key) DO NOTHING").format(
    sql.SQL(", ").join(map(sql.Identifier, REQUEST_COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() for _ in REQUEST_COLUMNS))
_INSERTED_SINCE = f"SELECT {', '.join(SOURCE_COLUMNS)} FROM requests WHERE id > %s"
_UPSERT_ROLLUPS = placeholders(UPSERT)
_KEY_FIELDS = KEY_COLUMNS
_KEY_COLUMNS = ", ".join(_KEY_FIELDS)

#: Pool bounds: the writer thread, the control loop, lease calls and `to_thread` readers
#: rarely need more than a few at once.
POOL_MIN, POOL_MAX = 1, 10
#: Seconds to wait for a connection (from the pool, or the first one to the server). A healthy
#: pool answers in microseconds; this bounds how long a call blocks its thread (a `to_thread`
#: worker the event loop shares) while the database is down.
CONNECT_TIMEOUT = 5.0


class _PostgresSchema:
    dialect = "postgres"
    id_column = "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def execute(self, statement: str) -> None:
        self._conn.execute(statement)  # type: ignore[arg-type]  # migration text is trusted

    def executemany(self, statement: str, params: Iterable[Sequence[object]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(placeholders(statement), list(params))  # type: ignore[arg-type]

    def rows(self, statement: str) -> Iterator[tuple]:
        # A server-side cursor: the rows come in pages, never all at once.
        with self._conn.cursor(name="circuit_migration_rows") as cursor:
            cursor.itersize = 10_000
            cursor.execute(statement)  # type: ignore[arg-type]
            yield from cursor


def postgres_error(exc: BaseException) -> StoreError | None:
    """psycopg's exceptions as the store's typed errors (None: not a database failure)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, errors.UndefinedTable) and "request_rollups" not in text:
        return NotCircuitDatabase(f"not a Circuit database ({text})")
    if isinstance(exc, errors.UndefinedColumn | errors.UndefinedTable):
        return SchemaOutdated(f"an older schema ({text}); starting a gateway migrates it")
    if isinstance(exc, psycopg.IntegrityError | psycopg.DataError):
        return StoreRejected(text)
    if isinstance(exc, psycopg.Error | PoolTimeout):
        return StoreUnavailable(text)
    return None


@translating(postgres_error)
class PostgresStore(PostgresProtection, PostgresReports, PruningQueries):
    """The Store interface on a PostgreSQL database (the schema is the URL's search_path).

    Every database failure is a typed StoreError (circuit/store/errors.py) whose message names
    the server and the reason, never the password.
    """

    dialect = "postgres"
    _pick_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> None:
        self.url = url
        self._sizes = (min_size, max_size)
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({safe_url(self.url)!r})"

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection for the length of the block."""
        pool = self._pool or self._open_pool()
        try:
            with pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise psycopg.OperationalError(
                f"no connection to {safe_url(self.url)} within {CONNECT_TIMEOUT:g} s") from None

    def _open_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is not None:
                return self._pool
            params = conninfo_to_dict(self.url)
            extra: dict[str, object] = {"autocommit": True}
            if "application_name" not in params:
                extra["application_name"] = "circuit"
            if "connect_timeout" not in params:
                extra["connect_timeout"] = int(CONNECT_TIMEOUT)
            # One plain connection first: a wrong host, password or database fails at once
            # with the server's reason, where the pool would retry until its timeout.
            try:
                psycopg.connect(self.url, **extra).close()
            except psycopg.Error as exc:
                raise psycopg.OperationalError(
                    f"cannot connect to {safe_url(self.url)}: {_reason(exc)}") from None
            pool = ConnectionPool(
                self.url, min_size=self._sizes[0], max_size=self._sizes[1], kwargs=extra,
                timeout=CONNECT_TIMEOUT, name="circuit", open=False,
                # A cheap check on checkout, so a replica rides out a database restart
                # without failing one call per stale connection.
                check=ConnectionPool.check_connection)
            try:
                pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            except PoolTimeout:
                pool.close()
                raise psycopg.OperationalError(
                    f"no connection to {safe_url(self.url)} within {CONNECT_TIMEOUT:g} s"
                ) from None
            self._pool = pool
            return pool

    def close(self) -> None:
        """Close the pool; a later call opens a new one."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def exists(self) -> bool:
        """Whether Circuit's tables are there (reading never creates them)."""
        with self.connection() as conn:
            return conn.execute(
                "SELECT to_regclass('circuit_migrations') IS NOT NULL").fetchone()[0]

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> None:
        # DDL is transactional here: every pending migration commits together or not at all,
        # and the advisory lock makes replicas starting together migrate once.
        with self.connection() as conn, conn.transaction():
            conn.execute(LOCK_STATEMENT, (MIGRATION_LOCK,))
            apply_pending(
                _PostgresSchema(conn),
                lambda: {row[0] for row in conn.execute("SELECT number FROM circuit_migrations")},
                lambda step: conn.execute("INSERT INTO circuit_migrations VALUES (%s, %s, %s)",
                                          (step.number, step.name, utc_now())))

    def applied_migrations(self) -> list[int]:
        with self.connection() as conn:
            return [row[0] for row in conn.execute(
                "SELECT number FROM circuit_migrations ORDER BY number")]

    # -- request records ---------------------------------------------------------------------

    def insert_requests(self, records: Sequence[RequestRecord], *, again: bool = False) -> None:
        """One COPY per batch (~150,000 rows/s in batches of 1,000; executemany ~75,000).
        `again`: the batch may be in already (an earlier attempt's commit was not confirmed),
        so rows whose record key exists are skipped, at executemany's speed.

        Batches from every replica take turns on an advisory lock held to commit, so ids become
        visible in increasing order, as on SQLite: a reader that saw id N has seen every
        committed id below it (`requests tail` relies on that). A batch of 1,000 holds the lock
        for ~7 ms."""
        self._insert(records, None, again)

    def insert_replayed(self, records: Sequence[RequestRecord], file: str, offset: int) -> None:
        """Journaled records and how far their file is replayed, in one transaction."""
        self._insert(records, (file, offset), True)

    def _insert(self, records: Sequence[RequestRecord], replayed: tuple[str, int] | None,
                again: bool) -> None:
        if not records and replayed is None:
            return
        with self.connection() as conn, conn.transaction():
            conn.execute(LOCK_STATEMENT, (REQUESTS_LOCK,))
            if records and again:
                # Some of the batch may be in already: the rollups count only what went in
                # (ids past the newest before it; the lock keeps other writers out).
                before = conn.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0]
                with conn.cursor() as cursor:
                    cursor.executemany(_INSERT_AGAIN, [request_row(r) for r in records])
                sources = conn.execute(_INSERTED_SINCE, (before,)).fetchall()
            elif records:
                with conn.cursor().copy(_COPY_REQUESTS) as copy:
                    for record in records:
                        copy.write_row(request_row(record))
                sources = map(source, records)  # COPY takes all of the batch or none of it
            if records:
                with conn.cursor() as cursor:
                    cursor.executemany(_UPSERT_ROLLUPS, upsert_rows(tally(sources)))
            if replayed is not None:
                conn.execute(
                    "INSERT INTO journal_replays (file, byte_offset, replayed_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT (file) DO UPDATE SET "
                    "byte_offset = excluded.byte_offset, replayed_at = excluded.replayed_at",
                    (*replayed, utc_now()))

    def journal_offset(self, file: str) -> int:
        with self.connection() as conn:
            row = conn.execute("SELECT byte_offset FROM journal_replays WHERE file = %s",
                               (file,)).fetchone()
        return row[0] if row else 0

    def release_space(self) -> int:
        """Nothing to give back: autovacuum makes dead rows' space reusable by itself."""
        return 0

    def compact(self) -> int:
        """Nothing to do: PostgreSQL's autovacuum keeps the tables from growing."""
        return 0

    def _change(self, statement: str, params: Sequence[object]) -> int:
        with self.connection() as conn:
            return conn.execute(placeholders(statement), params).rowcount  # type: ignore[arg-type]

    def recent_requests(self, limit: int = 10) -> list[dict]:
        with self.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM requests ORDER BY timestamp DESC, id DESC LIMIT %s",
                (limit,)).fetchall()

    def find_requests(self, request_id: str) -> list[dict]:
        with self.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM requests WHERE request_id = %s ORDER BY id",
                (request_id,)).fetchall()

    # -- keys --------------------------------------------------------------------------------

    def load_keys(self) -> list[KeyRow]:
        with self.connection() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(
                f"SELECT {_KEY_COLUMNS} FROM keys").fetchall()
        return [KeyRow(**row) for row in rows]

    def keys_fingerprint(self) -> str:
        # Every change bumps a row's version, so the sum moves on any change. The table holds
        # a row per key: this is one small scan, ~0.1 ms, polled twice a second per replica.
        with self.connection() as conn:
            count, versions = conn.execute(
                "SELECT count(*), coalesce(sum(version), 0) FROM keys").fetchone()
        return f"{count}:{versions}"

    def add_key(self, row: KeyRow) -> None:
        record = asdict(row)
        record["created_at"] = record["created_at"] or utc_now()
        record["updated_at"] = utc_now()
        columns = ", ".join(record)
        values = ", ".join(f"%({name})s" for name in record)
        try:
            with self.connection() as conn:
                conn.execute(f"INSERT INTO keys ({columns}) VALUES ({values})", record)
        except errors.UniqueViolation:
            raise KeyExists(row.name) from None

    def update_key(self, name: str, **changes: object) -> KeyRow:
        allowed = {"daily_limit_usd", "rpm", "tpm", "revoked_at"}
        if not changes or not set(changes) <= allowed:
            raise ValueError(f"cannot change {sorted(set(changes) - allowed) or 'nothing'}")
        assignments = ", ".join(f"{column} = %s" for column in changes)
        with self.connection() as conn:
            row = conn.cursor(row_factory=dict_row).execute(
                f"UPDATE keys SET {assignments}, updated_at = %s, version = version + 1 "
                f"WHERE name = %s RETURNING {_KEY_COLUMNS}",
                (*changes.values(), utc_now(), name)).fetchone()
        if row is None:
            raise KeyNotFound(name)
        return KeyRow(**row)


def _reason(exc: psycopg.Error) -> str:
    """A connection error on one line, in libpq's words (which never include a password)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def safe_url(url: str) -> str:
    """The URL without its password, fit for a log line or an error message."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host", "")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"
