"""`circuit requests prune` and `circuit requests export`: the request log's lifecycle by hand.

The gateway prunes by itself (circuit/store/retention.py); `prune` runs the same batches now,
or with another cutoff. `export` streams a window of the log to JSON Lines, CSV or Parquet.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Literal, get_args

import typer

from circuit.cli import output
from circuit.cli.context import reading, settings
from circuit.cli.output import JsonFlag, emit_json, fail
from circuit.cli.usage import parse_moment
from circuit.store import export as exporting
from circuit.store.reports import timestamp_text
from circuit.store.retention import Cutoffs, cutoffs, prune

Format = Literal["jsonl", "csv", "parquet"]
assert set(get_args(Format)) == set(exporting.FORMATS)


def prune_command(
    ctx: typer.Context,
    before: Annotated[str | None, typer.Option(
        "--before", metavar="DATE", show_default=False,
        help="Delete rows from before this date (YYYY-MM-DD, midnight UTC) or ISO-8601 time, "
             "instead of those past CIRCUIT_RETENTION_DAYS.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", metavar="", help="Count what would go; change nothing.")] = False,
    vacuum: Annotated[bool, typer.Option(
        "--vacuum", metavar="",
        help="SQLite: then rewrite the file to its smallest size and switch it to incremental "
             "vacuum (holds the write lock throughout: stop the gateway first).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete old request rows and clear old request text now, as the gateway does by itself.

    Rows older than CIRCUIT_RETENTION_DAYS (or `--before`) are deleted; the text of rows older
    than CIRCUIT_CONTENT_RETENTION_DAYS (partial answers, error messages) is cleared. Their
    counts, tokens and cost stay in the daily rollups, so `circuit usage` still reports them.
    Runs in batches of 500 rows, so a running gateway keeps writing.

    JSON: `{"before", "content_before", "dry_run", "deleted", "content_cleared",
    "released_bytes"}` (with --dry-run, the counts are what would go).

    Examples:

    * `circuit requests prune --dry-run`
    * `circuit requests prune --before 2026-01-01 --json`
    """
    config = settings(ctx)
    cut = cutoffs(config.retention_days, config.content_retention_days)
    if before is not None:
        rows = parse_moment("--before", before)
        if rows > timestamp_text(datetime.now(UTC)):
            raise fail(f"--before ({rows}) is in the future; nothing recorded yet can be "
                       "that old")
        content = max(cut.content, rows) if cut.content is not None else None
        cut = Cutoffs(rows, content)
    released = 0
    with reading(ctx) as store:
        store.migrate()  # rows must be in the rollups before any is deleted
        if dry_run:
            deleted, cleared = store.count_prunable(cut.rows, cut.content)
        else:
            result = prune(store, cut)
            deleted, cleared, released = result.deleted, result.cleared, result.released_bytes
            if vacuum:
                released += store.compact()
    if as_json:
        emit_json({"before": cut.rows, "content_before": cut.content, "dry_run": dry_run,
                   "deleted": deleted, "content_cleared": cleared,
                   "released_bytes": released})
        return
    console = output.out()
    if cut.rows is None and cut.content is None:
        console.print("Retention is off (CIRCUIT_RETENTION_DAYS and "
                      "CIRCUIT_CONTENT_RETENTION_DAYS): nothing to prune.", soft_wrap=True)
        return
    verb = ("would delete", "would clear") if dry_run else ("deleted", "cleared")
    if cut.rows is not None:
        console.print(f"{verb[0].capitalize()} {deleted:,} request rows from before "
                      f"{output.when(cut.rows)} UTC.", soft_wrap=True)
    if cut.content is not None:
        console.print(f"{verb[1].capitalize()} the text of {cleared:,} rows from before "
                      f"{output.when(cut.content)} UTC.", soft_wrap=True)
    if released:
        console.print(f"Gave {released / 1e6:,.1f} MB back to the file system.", soft_wrap=True)


@contextlib.contextmanager
def _destination(path: Path | None, binary_ok: bool) -> Iterator[IO[bytes]]:
    """The output file, written beside its name and moved into place only when complete (an
    audit never finds half a file), or stdout."""
    if path is None:
        if not binary_ok and sys.stdout.isatty():
            raise fail("Parquet is binary: give --output FILE, or pipe stdout")
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as out:
            yield out
        os.replace(partial, path)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)


def export_command(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="DATE", show_default=False,
        help="From this date (YYYY-MM-DD, midnight UTC) or ISO-8601 time; default: the "
             "oldest row.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", metavar="DATE", show_default=False,
        help="Up to (not including) this date or time; default: now.")] = None,
    fmt: Annotated[Format, typer.Option(
        "--format", help="jsonl (one record per line), csv, or parquet.")] = "jsonl",
    out: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", show_default=False,
        help="Write here (complete or not at all); default: stdout.")] = None,
) -> None:
    """Export the request rows of a window, oldest first, for a warehouse or an audit.

    Streams in pages, so memory stays flat however many rows. Every column of the requests
    table: JSON Lines has the fields of `requests show --json`; CSV a header of the column
    names, NULL as an empty field; Parquet typed columns (timestamp as a UTC timestamp),
    zstd-compressed, in row groups of 50,000 rows. Rows past the retention period are gone:
    export before they are pruned. Parquet needs pyarrow (`pip install 'circuit[parquet]'`).

    Examples:

    * `circuit requests export --since 2026-11-01 --until 2026-12-01 -o november.jsonl`
    * `circuit requests export --since 2026-11-01 --format parquet -o november.parquet`
    * `circuit requests export --format csv | gzip > requests.csv.gz`
    """
    start = parse_moment("--since", since) if since is not None else None
    end = parse_moment("--until", until) if until is not None else None
    if start is not None and end is not None and end <= start:
        raise fail(f"--until ({end}) must be after --since ({start})")
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise fail("Parquet export needs pyarrow: pip install 'circuit[parquet]'") from None
    with reading(ctx) as store, _destination(out, fmt != "parquet") as sink:
        count = exporting.WRITERS[fmt](exporting.pages(store, start, end), sink)
    if out is not None:
        output.note(f"Exported {count:,} requests to {out}.")


def register(requests: typer.Typer) -> None:
    """Add `prune` and `export` to the `circuit requests` group."""
    requests.command("prune")(prune_command)
    requests.command("export")(export_command)
