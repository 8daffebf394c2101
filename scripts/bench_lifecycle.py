"""Measure the request log's lifecycle on a year of traffic (1,000,000 rows by default).

    .venv/bin/python scripts/bench_lifecycle.py [--rows N] [--postgres URL] [--keep DIR]

- the record writer's insert rate with rollups (as the gateway writes: batches of 1,000) and
  without them (the same rows, the insert alone);
- `usage` over the year by key, model and day: from the rows alone (as before rollups) and
  as it reads now (whole days from rollups);
- `circuit requests export` of every row as JSON Lines and Parquet: time and peak RSS;
- a pruning round that deletes half the year, and the file before and after.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from circuit.store import sqlite_space  # noqa: E402
from circuit.store.records import REQUEST_COLUMNS, RequestRecord, request_row  # noqa: E402
from circuit.store.retention import Cutoffs, prune  # noqa: E402
from circuit.store.sqlite import SQLiteStore  # noqa: E402

KEYS = [f"team-{n}" for n in range(10)]
MODELS = [("gpt-4o-mini", "openai"), ("gpt-4o", "openai"), ("gpt-4.1", "openai"),
          ("claude-sonnet-4-5", "anthropic"), ("claude-haiku-4-5", "anthropic"),
          ("llama", "local")]


def year_of_records(rows: int, days: int = 365) -> list[list[RequestRecord]]:
    """`rows` records spread evenly over the `days` before today, in batches of 1,000."""
    rng = random.Random(7)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) \
        - timedelta(days=days)
    step = days * 86_400 / rows
    batches, batch = [], []
    for n in range(rows):
        at = start + timedelta(seconds=n * step)
        model, provider = rng.choice(MODELS)
        status = rng.choices(["ok", "failed", "rejected"], [95, 3, 2])[0]
        batch.append(RequestRecord(
            f"req_{n}", at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            rng.choice(KEYS), provider, model, model, stream=n % 2 == 0,
            status_code={"ok": 200, "failed": 502, "rejected": 429}[status], status=status,
            tokens_input=rng.randint(10, 4000), tokens_output=rng.randint(0, 800),
            cost_micros=rng.randint(10, 20_000), usage_source="provider",
            latency_ms=rng.lognormvariate(6.5, 0.8), ttfb_ms=rng.uniform(50, 400),
            attempts=1, partial_text="some partial text" if status == "failed" else None))
        if len(batch) == 1000:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def timed(fn, repeat: int = 3) -> float:
    """The best of `repeat` runs, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def insert_plain(store: SQLiteStore, batch: list[RequestRecord]) -> None:
    """The insert as it was before rollups: the rows alone, one transaction."""
    conn = store.connection()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in REQUEST_COLUMNS)}) "
                     "ON CONFLICT (record_key) DO NOTHING", [request_row(r) for r in batch])
    conn.execute("COMMIT")


# VmHWM, not ru_maxrss: getrusage keeps the high-water mark of the forking parent across exec.
_MEASURED = ("import runpy, sys\n"
             "sys.argv = ['circuit', *sys.argv[1:]]\n"
             "try:\n"
             "    runpy.run_module('circuit.cli', run_name='__main__')\n"
             "finally:\n"
             "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
             "    print(hwm[0].split()[1], file=sys.stderr)\n")


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `circuit ARGS` in a process of its own."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURED, *args], check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    return elapsed, int(done.stderr.strip().splitlines()[-1]) / 1024


def measure_writer(folder: Path, batches: list[list[RequestRecord]]) -> None:
    """Rows/s of the insert alone and of the insert with its rollups, batch by batch in
    turn (a busy machine slows both alike)."""
    plain, rolled = SQLiteStore(folder / "plain.db"), SQLiteStore(folder / "rolled.db")
    plain.migrate()
    rolled.migrate()
    spent = {"plain": 0.0, "rollups": 0.0}
    for batch in batches:
        started = time.perf_counter()
        insert_plain(plain, batch)
        middle = time.perf_counter()
        rolled.insert_requests(batch)
        spent["plain"] += middle - started
        spent["rollups"] += time.perf_counter() - middle
    rows = sum(map(len, batches))
    print(f"writer, {rows:,} rows in batches of 1,000: {rows / spent['plain']:,.0f} rows/s "
          f"the rows alone, {rows / spent['rollups']:,.0f} rows/s with rollups")


def rebuild_rollups(store) -> float:
    """Seconds the rollups' migration takes to backfill them from every row."""
    store._change("DROP TABLE request_rollups", [])
    store._change("DELETE FROM circuit_migrations WHERE number = 21", [])
    started = time.perf_counter()
    store.migrate()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="also measure usage on this PostgreSQL URL")
    parser.add_argument("--keep", help="folder for the database (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="use the databases a run with --keep left (rollups rebuilt)")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="circuit-lifecycle-"))
    folder.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(folder / "circuit.db")
    pg = None
    if args.postgres:
        from circuit.store.postgres import PostgresStore

        pg = PostgresStore(args.postgres)
    if args.reuse:
        print(f"rollups rebuilt from {args.rows:,} rows by their migration: "
              f"{rebuild_rollups(store):.1f} s (SQLite)"
              + (f", {rebuild_rollups(pg):.1f} s (PostgreSQL)" if pg else ""))
    else:
        batches = year_of_records(args.rows)
        measure_writer(folder, batches[:200])
        store.migrate()
        for batch in batches:
            store.insert_requests(batch)
        if pg is not None:
            pg.migrate()
            for batch in batches:
                pg.insert_requests(batch)
        del batches
    if pg is not None:
        pg._change("ANALYZE", [])  # what autovacuum does after a bulk load
    (count,), = store.connection().execute("SELECT COUNT(*) FROM request_rollups")
    print(f"rollup rows: {count:,}; file {sqlite_space.file_bytes(store.path) / 1e6:,.0f} MB")

    since = (date.today() - timedelta(days=364)).isoformat() + "T00:00:00.000Z"
    before_rollups = date.today() - timedelta(days=400)  # everything "today or later": rows
    for name, target in [("sqlite", store), *([("postgres", pg)] if pg else [])]:
        for by in ("key", "model", "day"):
            rows_ms = timed(lambda t=target, b=by: t.usage(since=since, by=b,
                                                           today=before_rollups), 1)
            rollup_ms = timed(lambda t=target, b=by: t.usage(since=since, by=b))
            print(f"usage over a year by {by} ({name}): {rows_ms:,.0f} ms from rows, "
                  f"{rollup_ms:,.1f} ms with rollups")
    cli_ms = timed(lambda: subprocess.run(
        [sys.executable, "-m", "circuit.cli", "--db", str(store.path), "usage", "--days",
         "365", "--json"], check=True, stdout=subprocess.DEVNULL))
    print(f"`circuit usage --days 365` as a command (SQLite): {cli_ms:,.0f} ms")

    month = (date.today() - timedelta(days=30)).isoformat()
    for fmt in ("jsonl", "csv", "parquet"):
        for window, label in (([], "every row"), (["--since", month], "the last 30 days")):
            target = folder / f"export.{fmt}"
            seconds, rss = peak_rss_mb(["--db", str(store.path), "requests", "export",
                                        "--format", fmt, "--output", str(target), *window])
            print(f"export {fmt}, {label}: {seconds:.1f} s, "
                  f"{target.stat().st_size / 1e6:,.0f} MB, peak RSS {rss:,.0f} MB")

    size = sqlite_space.file_bytes(store.path)
    half = (date.today() - timedelta(days=182)).isoformat() + "T00:00:00.000Z"
    started = time.perf_counter()
    result = prune(store, Cutoffs(half, None))
    print(f"prune half a year: {result.deleted:,} rows in {time.perf_counter() - started:.1f} s "
          f"(batches of 500 with pauses); file {size / 1e6:,.0f} MB -> "
          f"{sqlite_space.file_bytes(store.path) / 1e6:,.0f} MB")
    started = time.perf_counter()
    SQLiteStore(store.path).migrate()
    print(f"start-up (open + migrate) after it: {(time.perf_counter() - started) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
