"""`circuit usage`: requests, failures, tokens, cost and latency per key, model, provider or day.

Aggregated in the store (`circuit.store.reports`): whole past days from the daily and monthly
rollups (so a year answers in milliseconds, and days whose rows retention pruned still
count), today and partial days from the request rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal, get_args

import typer

from circuit.cli import output
from circuit.cli.context import reading, settings
from circuit.cli.output import EXIT_CHECK_FAILED, JsonFlag, emit_csv, emit_json, fail, text
from circuit.keys import config_key_names
from circuit.money import micros_rounded
from circuit.store.base import Store
from circuit.store.reports import GROUPINGS, UsageReport, UsageRow, day_start, timestamp_text

GroupBy = Literal["key", "model", "provider", "api", "day"]
assert set(get_args(GroupBy)) == set(GROUPINGS)

COLUMNS = ("requests", "failed", "rejected", "tokens_in", "tokens_out", "cost_usd", "unpriced",
           "p50_ms", "p95_ms")


def parse_moment(option: str, value: str) -> str:
    """A date (midnight UTC) or an ISO-8601 time (naive means UTC), as timestamp text."""
    raw = value.strip()
    try:
        if len(raw) == 10:
            return day_start(date.fromisoformat(raw))
        return timestamp_text(datetime.fromisoformat(raw))
    except ValueError:
        raise fail(f"{option} must be a date (YYYY-MM-DD) or an ISO-8601 time such as "
                   f"2026-11-26T09:30Z, got {value!r}") from None


def window(today: bool, since: str | None, days: int | None, until: str | None,
           *, now: datetime | None = None) -> tuple[str, str | None]:
    """(since, until) as timestamp text from the flags; today (UTC) by default."""
    chosen = [flag for flag, given in (("--today", today), ("--since", since is not None),
                                       ("--days", days is not None)) if given]
    if len(chosen) > 1:
        raise fail(f"{' and '.join(chosen)} cannot be combined; choose one")
    current = (now or datetime.now(UTC)).date()
    if since is not None:
        start = parse_moment("--since", since)
    elif days is not None:
        if days < 1:
            raise fail(f"--days must be at least 1, got {days}")
        start = day_start(current - timedelta(days=days - 1))
    else:
        start = day_start(current)
    end = parse_moment("--until", until) if until is not None else None
    if end is not None and end <= start:
        raise fail(f"--until ({end}) must be after the start of the window ({start})")
    return start, end


def check_key(store: Store, key: str, api_keys: Sequence[str]) -> None:
    if key in config_key_names(api_keys) or any(row.name == key for row in store.load_keys()) \
            or store.has_requests_from(key):
        return
    raise fail(f"no key named {key!r}; see `circuit keys list`")


def row_json(row: UsageRow, *, group: bool = True) -> dict:
    data = {"group": row.group} if group else {}
    data.update(requests=row.requests, failed=row.failed, rejected=row.rejected,
                tokens_in=row.tokens_in, tokens_out=row.tokens_out,
                cost_usd=output.micros_usd(row.cost_micros), unpriced=row.unpriced,
                p50_ms=row.p50_ms, p95_ms=row.p95_ms)
    return data


def report_json(report: UsageReport, fail_over: float | None, over: bool) -> dict:
    return {"since": report.since, "until": report.until, "by": report.by, "key": report.key,
            "groups": [row_json(r) for r in report.groups],
            "total": row_json(report.total, group=False),
            "fail_over_usd": fail_over, "over": over}


def print_table(report: UsageReport) -> None:
    console = output.out()
    span = f"{output.when(report.since)} → {output.when(report.until) if report.until else 'now'}"
    scope = f" for key {report.key}" if report.key else ""
    if not report.groups:
        console.print(f"No requests{text(scope)} from {span} (UTC).", soft_wrap=True)
        return
    table = output.table(f"Usage by {report.by}{text(scope)}, {span} (UTC)")
    longest = max(len(text(r.group)) for r in report.groups)
    table.add_column(report.by.capitalize(), overflow="fold", min_width=min(longest, 10))
    for heading in ("Requests", "Failed", "Rejected", "Tokens\nin", "Tokens\nout", "Cost",
                    "p50", "p95"):
        table.add_column(heading, justify="right", no_wrap=True)

    def cells(row: UsageRow) -> list[str]:
        failed = f"[red]{row.failed:,}[/red]" if row.failed else "0"
        return [output.count(row.requests), failed, output.count(row.rejected),
                output.compact(row.tokens_in), output.compact(row.tokens_out),
                output.cost(row.cost_micros, row.unpriced), output.millis(row.p50_ms),
                output.millis(row.p95_ms)]

    for row in report.groups:
        table.add_row(text(row.group), *cells(row))
    table.add_section()
    table.add_row("Total", *cells(report.total), style="bold")
    console.print(table)
    if report.total.unpriced:
        models = [r.group for r in report.groups if r.unpriced and r.group] \
            if report.by == "model" else []
        console.print(output.unpriced_note(report.total.unpriced, models), style="yellow",
                      soft_wrap=True, markup=False)


def usage(
    ctx: typer.Context,
    today: Annotated[bool, typer.Option("--today", metavar="",
                                        help="Today, UTC (the default).")] = False,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="DATE", show_default=False,
        help="From this date (YYYY-MM-DD, midnight UTC) or ISO-8601 time.")] = None,
    days: Annotated[int | None, typer.Option(
        "--days", metavar="N", show_default=False,
        help="The last N UTC days, today included.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", metavar="DATE", show_default=False,
        help="Up to (not including) this date or time; default now.")] = None,
    by: Annotated[GroupBy, typer.Option(
        "--by", metavar="GROUP",
        help="Group rows by key, model, provider, api (the door) or day.")] = "key",
    key: Annotated[str | None, typer.Option(
        "--key", metavar="NAME", show_default=False,
        help="Only this key's requests.")] = None,
    as_json: JsonFlag = False,
    as_csv: Annotated[bool, typer.Option(
        "--csv", metavar="", help="Print CSV: a header, then one row per group (no total).")
    ] = False,
    fail_over: Annotated[float | None, typer.Option(
        "--fail-over", metavar="USD", show_default=False,
        help="Exit 1 when the total cost is over this many USD (a CI budget gate).")] = None,
) -> None:
    """Requests, failures, tokens, cost and p50/p95 latency per group, with a total.

    Failed counts upstream failures and broken streams; rejected counts requests the gateway
    refused (auth, rate limit, budget, bad input); latency percentiles leave rejected
    requests out. Windows are UTC: `--today` (the default), `--days N` or `--since DATE`,
    optionally with `--until DATE`.

    Whole past days are read from the daily rollups, which outlive the rows that retention
    prunes: their percentiles come from a latency histogram (within 9%); a window inside
    one day (`--today`) has exact ones. A window that starts or ends inside a pruned day
    counts only the rows left of that day: use whole dates.

    JSON: `{"since", "until", "by", "key", "groups": [{"group", "requests", "failed",
    "rejected", "tokens_in", "tokens_out", "cost_usd", "unpriced", "p50_ms", "p95_ms"}],
    "total": {same without "group"}, "fail_over_usd", "over"}`.

    Examples:

    * `circuit usage --days 7 --by model`
    * `circuit usage --since 2026-11-01 --by day --csv > november.csv`
    * `circuit usage --today --fail-over 25` (exit 1 once today's spend is over $25)
    """
    if as_json and as_csv:
        raise fail("--json and --csv cannot be combined; choose one")
    if fail_over is not None and (not math.isfinite(fail_over) or fail_over < 0):
        raise fail(f"--fail-over must be an amount in USD >= 0, got {fail_over}")
    start, end = window(today, since, days, until)
    api_keys = settings(ctx).api_keys
    with reading(ctx) as store:
        if key is not None:
            check_key(store, key, api_keys)
        report = store.usage(since=start, until=end, by=by, key=key)
    over = fail_over is not None and report.total.cost_micros > micros_rounded(fail_over)
    if as_json:
        emit_json(report_json(report, fail_over, over))
    elif as_csv:
        emit_csv([by, *COLUMNS], ([r.group, *list(row_json(r, group=False).values())]
                                  for r in report.groups))
    else:
        print_table(report)
    if over:
        raise fail(f"total cost {output.usd(report.total.cost_usd)} is over "
                   f"{output.usd(fail_over)} (--fail-over)", EXIT_CHECK_FAILED)
