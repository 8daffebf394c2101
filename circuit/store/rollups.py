"""Daily and monthly rollups of the request log: what `circuit usage` reads for whole days, and
what is left of spend and traffic once retention has pruned the rows.

One row per span ('day' or 'month'), UTC day (a month's row is dated its first day), key,
model, provider and door (`api`), with the counts, tokens, cost and a latency histogram
(circuit/store/latency_histogram.py) of the requests in it; and a 'day_total' row per day
over all of them, for reports by day. A missing key, model or provider is
stored as '' (a primary key cannot hold NULL) and read back as None.

The record writer adds each batch to its rollups in the same transaction as the batch's rows
(`tally` then `UPSERT`), so rollups are exact: a batch that is written again, or a journal
replayed twice, adds only the rows that went in. A report over a year reads about 12 month
rows and up to 60 day rows per group instead of every request; one by day, 365 day totals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from circuit.store import latency_histogram as hist
from circuit.store.records import RequestRecord

#: The key of a rollup row after its span and day: the dimensions a report can group by.
DIMENSIONS = ("key_name", "model", "provider", "api")
#: Summed counters, in the order `tally` keeps them.
COUNTERS = ("requests", "failed", "rejected", "client_disconnected", "tokens_input",
            "tokens_output", "tokens_cached", "cost_micros", "unpriced", "latency_sum_ms")
_FIRST_BUCKET = len(COUNTERS)
#: The counter each status other than ok adds to.
_STATUS_COUNTER = {"failed": 1, "rejected": 2, "client_disconnected": 3}
COLUMNS: tuple[str, ...] = ("span", "day", *DIMENSIONS, *COUNTERS, *hist.COLUMNS)

#: What `tally` reads from the requests table, in this order (the same as `source`).
SOURCE_COLUMNS = ("timestamp", "key_name", "model", "provider", "api", "status",
                  "tokens_input", "tokens_output", "tokens_cached", "cost_micros", "latency_ms")

UPSERT = (
    f"INSERT INTO request_rollups ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)}) "
    f"ON CONFLICT (span, day, {', '.join(DIMENSIONS)}) DO UPDATE SET "
    + ", ".join(f"{c} = request_rollups.{c} + excluded.{c}"
                for c in (*COUNTERS, *hist.COLUMNS)))

#: What a report may group rollups by, as the column that holds it.
GROUP_COLUMNS = {"key": "key_name", "model": "model", "provider": "provider", "api": "api",
                 "day": "day"}


def source(record: RequestRecord) -> tuple:
    """A record as `tally` reads it (the same shape as a row of SOURCE_COLUMNS)."""
    return (record.timestamp, record.key_name, record.model, record.provider, record.api,
            record.status, record.tokens_input, record.tokens_output, record.tokens_cached,
            record.cost_micros, record.latency_ms)


def tally(sources: Iterable[Sequence]) -> dict[tuple, list]:
    """Counters and latency histogram per (day, key, model, provider, api) of the requests.

    On the writer thread for every batch, so written for speed: locals, the bucket inlined."""
    groups: dict[tuple, list] = {}
    width = _FIRST_BUCKET + hist.BUCKETS
    floor, top, steps, log2 = hist.FLOOR_MS, hist.BUCKETS - 1, hist.STEPS_PER_DOUBLING, math.log2
    for (timestamp, key, model, provider, api, status, tokens_in, tokens_out, cached, cost,
         latency) in sources:
        group = (timestamp[:10], key or "", model or "", provider or "", api or "chat")
        counts = groups.get(group)
        if counts is None:
            counts = groups[group] = [0] * width
            counts[9] = 0.0
        counts[0] += 1
        counter = _STATUS_COUNTER.get(status)
        if counter is not None:
            counts[counter] += 1
        tokens = (tokens_in or 0) + (tokens_out or 0)
        counts[4] += tokens_in or 0
        counts[5] += tokens_out or 0
        counts[6] += cached or 0
        if cost is not None:
            counts[7] += cost
        elif tokens > 0:
            counts[8] += 1
        # As in the report over rows: rejected requests say nothing of upstream latency.
        if latency is not None and status != "rejected":
            counts[9] += latency
            bucket = 0 if latency < floor else min(top, 1 + int(log2(latency / floor) * steps))
            counts[_FIRST_BUCKET + bucket] += 1
    return groups


def upsert_rows(groups: dict[tuple, list]) -> list[tuple]:
    """UPSERT parameters: each group's day row, the rows of the months they fall in, and each
    day's total over every group (what a report by day without a key reads)."""
    months: dict[tuple, list] = {}
    days: dict[tuple, list] = {}
    rows = []
    for (day, *dimensions), counts in groups.items():
        rows.append(("day", day, *dimensions, *counts))
        _add_to(months, ("month", f"{day[:8]}01", *dimensions), counts)
        _add_to(days, ("day_total", day, "", "", "", ""), counts)
    rows.extend((*key, *counts) for key, counts in (*months.items(), *days.items()))
    return rows


def _add_to(sums: dict[tuple, list], key: tuple, counts: list) -> None:
    total = sums.get(key)
    if total is None:
        sums[key] = list(counts)
    else:
        for i, value in enumerate(counts):
            total[i] += value


# -- reading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WindowPlan:
    """Where each part of a report's window is read from."""

    #: Timestamp ranges [start, end) (end None: open) read from the request rows.
    row_ranges: list[tuple[str, str | None]] = field(default_factory=list)
    #: Day ranges [first, end) read from day rollups, and month ranges from month rollups.
    days: list[tuple[str, str]] = field(default_factory=list)
    months: list[tuple[str, str]] = field(default_factory=list)

    @property
    def uses_rollups(self) -> bool:
        return bool(self.days or self.months)


def _midnight(day: date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


def _month_after(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def plan_window(since: str, until: str | None, today: date, *, months: bool = True
                ) -> WindowPlan:
    """Split a window into partial days read from rows (today, always, when the window is
    open) and whole days read from rollups (whole months from month rows when `months`)."""
    first = date.fromisoformat(since[:10])
    if since != _midnight(first):
        first += timedelta(days=1)
    end = today if until is None else date.fromisoformat(until[:10])
    if first >= end:
        return WindowPlan(row_ranges=[(since, until)])
    rows = []
    if since < _midnight(first):
        rows.append((since, _midnight(first)))
    if until is None or until > _midnight(end):
        rows.append((_midnight(end), until))
    month_first = first if first.day == 1 else _month_after(first)
    month_end = end.replace(day=1)
    if not months or month_first >= month_end:
        return WindowPlan(row_ranges=rows, days=[(first.isoformat(), end.isoformat())])
    days = [(a.isoformat(), b.isoformat())
            for a, b in ((first, month_first), (month_end, end)) if a < b]
    return WindowPlan(row_ranges=rows, days=days,
                      months=[(month_first.isoformat(), month_end.isoformat())])


def totals_sql(by: str, span: str, key: str | None) -> str:
    """Per group: requests, failed, rejected, tokens in and out, cost, unpriced, then the
    histogram's buckets, over the `span` rollups from day `?` up to (not including) day `?`
    (and of key `?`)."""
    column = GROUP_COLUMNS[by]
    sums = ", ".join(f"SUM({c})" for c in ("requests", "failed", "rejected", "tokens_input",
                                            "tokens_output", "cost_micros", "unpriced",
                                            *hist.COLUMNS))
    scope = " AND key_name = ?" if key is not None else ""
    return (f"SELECT {column}, {sums} FROM request_rollups "
            f"WHERE span = '{span}' AND day >= ? AND day < ?{scope} GROUP BY 1")
