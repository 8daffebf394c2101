"""Read-side queries over the request log: usage reports, spend, and the log itself.

Portable SQL that SQLite and PostgreSQL both accept (CASE rather than boolean sums, `substr`,
positional GROUP BY), run through a `Rows` callable: one statement with `?` placeholders in,
a DB-API cursor yielding tuples out. A store supplies it (`SQLiteReports._rows`; a PostgreSQL
store would turn `?` into `%s`). Nothing here writes.

Timestamps are ISO-8601 UTC text of one fixed shape (`2026-11-26T03:44:56.123Z`), so a time
window is a text range the `requests (timestamp)` and `requests (key_name, timestamp)` indexes
serve. Aggregates are computed in SQL; latency percentiles in Python from a scan of the latency
column alone (on SQLite a window-function percentile over 1M rows is ~3x slower). Whole days
of a usage report come from the rollups instead (circuit/store/rollups.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from circuit.money import usd
from circuit.store import latency_histogram
from circuit.store.records import REQUEST_COLUMNS
from circuit.store.rollups import plan_window, totals_sql
from circuit.store.timestamps import utc_text

#: Runs one statement (`?` placeholders) and returns a DB-API cursor over its rows as tuples.
Rows = Callable[[str, Sequence[object]], Any]

#: What `usage` can group by, and the SQL expression of each group. `key_name || ''` is
#: deliberate: grouping by the bare column makes SQLite's planner walk the whole
#: (key_name, timestamp) index to avoid a sort, instead of searching the time range
#: (50 ms instead of 2 ms for one day of a 1M-row table).
GROUPINGS: dict[str, str] = {
    "key": "key_name || ''",
    "model": "model",
    "provider": "provider",
    "api": "api",
    "day": "substr(timestamp, 1, 10)",
}

#: Statuses a request record can have (see RequestRecord.status).
STATUSES = ("ok", "failed", "rejected", "client_disconnected")

#: Columns every request record returned here has (`SELECT *`: columns a later migration adds
#: come too, and a database a newer CLI reads before its gateway migrated it still works).
RECORD_FIELDS: tuple[str, ...] = ("id", *REQUEST_COLUMNS)


def timestamp_text(moment: datetime) -> str:
    """`moment` as the text the timestamp column holds (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_text(moment.timestamp())


def day_start(day: date) -> str:
    """Midnight UTC at the start of `day`, as timestamp text."""
    return timestamp_text(datetime.combine(day, time.min, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a usage report (or its total, whose `group` is None)."""

    group: str | None
    requests: int
    failed: int
    rejected: int
    tokens_in: int
    tokens_out: int
    cost_micros: int
    #: Requests that used tokens but whose model has no price (so `cost` leaves them out).
    unpriced: int
    #: Nearest-rank latency percentiles over the requests that were not rejected.
    p50_ms: float | None
    p95_ms: float | None

    @property
    def cost_usd(self) -> float:
        return usd(self.cost_micros)


@dataclass(frozen=True, slots=True)
class UsageReport:
    by: str
    since: str
    until: str | None
    key: str | None
    groups: list[UsageRow]
    total: UsageRow


def time_window(since: str, until: str | None, key: str | None = None
                ) -> tuple[str, list[object]]:
    """The WHERE clause (and its parameters) of rows in [since, until), of `key` if given."""
    where, params = ["timestamp >= ?"], [since]
    if until is not None:
        where.append("timestamp < ?")
        params.append(until)
    if key is not None:
        where.append("key_name = ?")
        params.append(key)
    return " AND ".join(where), params


def percentile(ordered: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile `p` (0-100) of an ascending sequence; None when empty."""
    if not ordered:
        return None
    rank = max(1, (p * len(ordered) + 99) // 100)
    return ordered[rank - 1]


def _row_totals(rows: Rows, group: str, where: str, params: list[object],
                totals: dict[str | None, list[int]],
                latencies: dict[str | None, list[float]]) -> None:
    """Add the counts and latencies of the request rows in one window to the running sums."""
    for row in rows(
            f"SELECT {group}, COUNT(*), "
            "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), "
            "COALESCE(SUM(tokens_input), 0), COALESCE(SUM(tokens_output), 0), "
            "COALESCE(SUM(cost_micros), 0), "
            "SUM(CASE WHEN cost_micros IS NULL AND tokens_input + tokens_output > 0 "
            "THEN 1 ELSE 0 END) "
            f"FROM requests WHERE {where} GROUP BY 1", params):
        _add(totals, row[0], row[1:])
    for name, latency in rows(
            f"SELECT {group}, latency_ms FROM requests WHERE {where} "
            "AND latency_ms IS NOT NULL AND status <> 'rejected'", params):
        latencies.setdefault(name, []).append(latency)


def _add(sums: dict, name: object, values: Sequence) -> None:
    current = sums.get(name)
    if current is None:
        sums[name] = [int(v or 0) for v in values]
    else:
        for i, value in enumerate(values):
            current[i] += int(value or 0)


def usage(rows: Rows, *, since: str, until: str | None = None, by: str = "key",
          key: str | None = None, today: date | None = None) -> UsageReport:
    """Requests, failures, tokens, cost and latency percentiles per group in a time window.

    Whole days come from the rollups (whole months from month rollups, except by day), the
    rest of the window (today, a window that starts or ends inside a day) from the rows. A
    window read from rows alone has exact percentiles; once rollups are in it, percentiles
    are read from the merged latency histograms (within 9.1%, latency_histogram.py)."""
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(GROUPINGS)}")
    plan = plan_window(since, until, today or datetime.now(UTC).date(), months=by != "day")
    totals: dict[str | None, list[int]] = {}
    latencies: dict[str | None, list[float]] = {}
    for start, end in plan.row_ranges:
        where, params = time_window(start, end, key)
        _row_totals(rows, GROUPINGS[by], where, params, totals, latencies)
    histograms: dict[str | None, list[int]] = {}
    daily = "day_total" if by == "day" and key is None else "day"
    for span, ranges in ((daily, plan.days), ("month", plan.months)):
        for first, end in ranges:
            for row in rows(totals_sql(by, span, key), [first, end, *_scope(key)]):
                name = row[0] or None  # '' in a rollup is a missing key, model or provider
                _add(totals, name, row[1:8])
                _add(histograms, name, row[8:])

    if plan.uses_rollups:
        for name, values in latencies.items():
            _add(histograms, name, latency_histogram.histogram(values))
        everything = [sum(column) for column in zip(*histograms.values(), strict=True)]
        pick = latency_histogram.percentile
        group_latency = lambda name: histograms.get(name, ())  # noqa: E731
    else:
        everything = _sorted_runs(latencies)
        pick = percentile
        group_latency = lambda name: latencies.get(name, ())  # noqa: E731

    groups = [UsageRow(name, *counts, pick(group_latency(name), 50),
                       pick(group_latency(name), 95))
              for name, counts in totals.items()]
    if by == "day":
        groups.sort(key=lambda r: r.group or "")
    else:
        groups.sort(key=lambda r: (-r.cost_micros, -r.requests, r.group is None, r.group or ""))
    sums = [sum(column) for column in zip(*totals.values(), strict=True)] if totals else [0] * 7
    total = UsageRow(None, *sums, pick(everything, 50), pick(everything, 95))
    return UsageReport(by=by, since=since, until=until, key=key, groups=groups, total=total)


def _scope(key: str | None) -> list[object]:
    return [key] if key is not None else []


def _sorted_runs(latencies: dict[str | None, list[float]]) -> list[float]:
    """Each group's latencies sorted in place, and all of them in one sorted list."""
    everything: list[float] = []
    for values in latencies.values():
        values.sort()
        everything.extend(values)
    everything.sort()  # concatenated sorted runs: timsort merges them in linear time
    return everything


def spend_by_key(rows: Rows, since: str) -> dict[str | None, int]:
    """Cost in micro-dollars per key name of the requests since `since`."""
    return {name: int(cost) for name, cost in rows(
        "SELECT key_name || '', COALESCE(SUM(cost_micros), 0) FROM requests "
        "WHERE timestamp >= ? GROUP BY 1", [since])}


def has_requests_from(rows: Rows, key: str) -> bool:
    """Whether any request record, or the rollup of a pruned one, names the key `key`."""
    return any(True for _ in rows("SELECT 1 FROM requests WHERE key_name = ? LIMIT 1", [key])) \
        or any(True for _ in rows("SELECT 1 FROM request_rollups WHERE key_name = ? LIMIT 1",
                                  [key]))


def record_dict(row: dict) -> dict:
    """A request record as a plain dict, `stream` as a bool."""
    record = dict(row)
    if "stream" in record:
        record["stream"] = bool(record["stream"])
    return record


def _records(rows: Rows, sql: str, params: Sequence[object]) -> list[dict]:
    cursor = rows(sql, params)
    names = [column[0] for column in cursor.description]
    return [record_dict(zip(names, values, strict=True)) for values in cursor]


def _filters(key: str | None, status: str | None) -> tuple[str, list[object]]:
    where, params = [], []
    if key is not None:
        where.append("key_name = ?")
        params.append(key)
    if status is not None:
        where.append("status = ?")
        params.append(status)
    return "".join(f" AND {w}" for w in where), params


def last_request_id(rows: Rows) -> int:
    """The id of the newest request record, 0 when there is none."""
    for (newest,) in rows("SELECT COALESCE(MAX(id), 0) FROM requests", []):
        return int(newest)
    return 0


def latest_requests(rows: Rows, limit: int = 10, *, up_to_id: int | None = None,
                    key: str | None = None, status: str | None = None) -> list[dict]:
    """The newest `limit` records (up to `up_to_id`, matching the filters), oldest first."""
    extra, params = _filters(key, status)
    bound = "id <= ?" if up_to_id is not None else "1 = 1"
    bound_params = [up_to_id] if up_to_id is not None else []
    records = _records(rows, f"SELECT * FROM requests WHERE {bound}{extra} "
                             "ORDER BY id DESC LIMIT ?", [*bound_params, *params, limit])
    records.reverse()
    return records


def requests_between(rows: Rows, after_id: int, up_to_id: int, *, key: str | None = None,
                     status: str | None = None) -> list[dict]:
    """Records with `after_id < id <= up_to_id` matching the filters, oldest first.

    Bounding by id on both sides lets a follower advance past rows the filters skip, so each
    poll reads only what arrived since the last one. (SQLite commits one writer at a time, so
    ids become visible in order; a PostgreSQL store would need to allow for late commits.)
    """
    extra, params = _filters(key, status)
    return _records(rows, f"SELECT * FROM requests WHERE id > ? AND id <= ?{extra} ORDER BY id",
                    [after_id, up_to_id, *params])


class ReportQueries:
    """The report methods every store offers, run through the store's own `_rows`."""

    def _rows(self, sql: str, params: Sequence[object]) -> Any:
        raise NotImplementedError

    def usage(self, *, since: str, until: str | None = None, by: str = "key",
              key: str | None = None, today: date | None = None) -> UsageReport:
        return usage(self._rows, since=since, until=until, by=by, key=key, today=today)

    def spend_by_key(self, since: str) -> dict[str | None, int]:
        return spend_by_key(self._rows, since)

    def has_requests_from(self, key: str) -> bool:
        return has_requests_from(self._rows, key)

    def last_request_id(self) -> int:
        return last_request_id(self._rows)

    def latest_requests(self, limit: int = 10, *, up_to_id: int | None = None,
                        key: str | None = None, status: str | None = None) -> list[dict]:
        return latest_requests(self._rows, limit, up_to_id=up_to_id, key=key,
                                       status=status)

    def request_page(self, since: str | None, until: str | None,
                     after: tuple[str, int] | None, limit: int) -> list[tuple]:
        from circuit.store.export import request_page

        return request_page(self._rows, since, until, after, limit)

    def requests_between(self, after_id: int, up_to_id: int, *, key: str | None = None,
                         status: str | None = None) -> list[dict]:
        return requests_between(self._rows, after_id, up_to_id, key=key, status=status)
