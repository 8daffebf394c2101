"""Export of the request log for warehouses and audits: JSON Lines, CSV or Parquet, streamed.

Rows are read a page at a time in (timestamp, id) order, each page one short query that
resumes after the last row of the one before (no long read transaction, so an export never
holds back SQLite's checkpoints), and written out before the next is read: memory stays
constant whatever the window. Parquet goes through pyarrow (an optional dependency:
`pip install 'circuit[parquet]'`), in row groups of `PARQUET_ROW_GROUP` rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import IO, Any

import orjson

from circuit.store.reports import RECORD_FIELDS, Rows, time_window

#: Rows per query.
PAGE_ROWS = 10_000
#: Rows per Parquet row group (written, and freed, as each fills).
PARQUET_ROW_GROUP = 50_000
FORMATS = ("jsonl", "csv", "parquet")

_SELECT = f"SELECT {', '.join(RECORD_FIELDS)} FROM requests"
_STREAM = RECORD_FIELDS.index("stream")
_AT = RECORD_FIELDS.index("timestamp")


def request_page(rows: Rows, since: str | None, until: str | None,
                 after: tuple[str, int] | None, limit: int) -> list[tuple]:
    """Up to `limit` rows of the window [since, until) after (timestamp, id) `after`, oldest
    first, as tuples in RECORD_FIELDS order."""
    window, params = time_window(since or "", until)  # '' sorts before every timestamp
    if after is not None:
        window += " AND timestamp >= ? AND (timestamp > ? OR id > ?)"
        params += [after[0], after[0], after[1]]
    return list(rows(f"{_SELECT} WHERE {window} ORDER BY timestamp, id LIMIT ?",
                     [*params, limit]))


def pages(store: Any, since: str | None, until: str | None,
          page_rows: int = PAGE_ROWS) -> Iterator[list[tuple]]:
    """Every row of the window, a page (one query through the store) at a time."""
    after = None
    while True:
        page = store.request_page(since, until, after, page_rows)
        if page:
            yield page
        if len(page) < page_rows:
            return
        after = (page[-1][_AT], page[-1][0])


def _records(page: Sequence[tuple]) -> Iterator[dict]:
    for row in page:
        record = dict(zip(RECORD_FIELDS, row, strict=True))
        record["stream"] = bool(row[_STREAM])
        yield record


def write_jsonl(pages: Iterator[list[tuple]], out: IO[bytes]) -> int:
    """One JSON object per line, as `requests show --json` prints a record; rows written."""
    count = 0
    for page in pages:
        out.write(b"".join(orjson.dumps(record) + b"\n" for record in _records(page)))
        count += len(page)
    return count


def write_csv(pages: Iterator[list[tuple]], out: IO[bytes]) -> int:
    """A header, then one line per row (NULL as an empty field); rows written."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(RECORD_FIELDS)
    count = 0
    for page in pages:
        writer.writerows(["" if v is None else v for v in row] for row in page)
        count += len(page)
    text.flush()
    text.detach()
    return count


def parquet_schema() -> Any:
    """The Parquet columns: the request table's, with the timestamp as a UTC timestamp."""
    import pyarrow as pa

    types = {"id": pa.int64(), "timestamp": pa.timestamp("ms", tz="UTC"), "stream": pa.bool_(),
             "status_code": pa.int32(), "tokens_input": pa.int64(),
             "tokens_output": pa.int64(), "tokens_cached": pa.int64(),
             "cost_micros": pa.int64(), "latency_ms": pa.float64(), "ttfb_ms": pa.float64(),
             "attempts": pa.int32(), "cost_usd": pa.float64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in RECORD_FIELDS])


def write_parquet(pages: Iterator[list[tuple]], out: IO[bytes] | str) -> int:
    """Row groups of PARQUET_ROW_GROUP rows: each page becomes Arrow columns at once (compact,
    unlike the rows it came in), and a row group is written, and freed, as soon as it fills;
    rows written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = parquet_schema()

    def columns(page: list[tuple]) -> Any:
        values = list(zip(*page, strict=True))
        values[_STREAM] = tuple(bool(v) for v in values[_STREAM])
        arrays = [pa.array(column, type=field.type) if i != _AT else
                  pc.cast(pa.array(column, type=pa.string()), field.type)
                  for i, (column, field) in enumerate(zip(values, schema, strict=True))]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    count = 0
    group: list[Any] = []
    grouped = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for page in pages:
            group.append(columns(page))
            grouped += len(page)
            count += len(page)
            if grouped >= PARQUET_ROW_GROUP:
                writer.write_table(pa.Table.from_batches(group), row_group_size=grouped)
                group, grouped = [], 0
        if group:
            writer.write_table(pa.Table.from_batches(group), row_group_size=grouped)
    return count


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}
