"""`circuit requests prune` and `circuit requests export`."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from circuit.store.reports import RECORD_FIELDS
from tests.support.cli import Cli, days_ago, one_line_error, record


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Cli:
    cli = Cli(tmp_path, monkeypatch)
    cli.seed(
        record("old", timestamp=days_ago(120), cost_micros=7_000_000),
        record("month", timestamp=days_ago(30), partial_text="half an answer",
               error_message="the upstream quoted the prompt"),
        record("new", timestamp=days_ago(1), partial_text="fresh text"),
    )
    return cli


def _ids(cli: Cli) -> list[str]:
    store = cli.store()
    try:
        return sorted(r["request_id"] for r in store.recent_requests(limit=100))
    finally:
        store.close()


def test_prune_applies_the_configured_retention(cli):
    data = cli.json("requests", "prune")
    assert (data["deleted"], data["content_cleared"], data["dry_run"]) == (1, 1, False)
    assert _ids(cli) == ["month", "new"]
    shown = cli.json("requests", "show", "month")
    assert shown["partial_text"] is None and shown["error_message"] is None
    assert cli.json("requests", "show", "new")["partial_text"] == "fresh text"


def test_a_dry_run_counts_and_changes_nothing(cli):
    data = cli.json("requests", "prune", "--dry-run")
    assert (data["deleted"], data["content_cleared"], data["dry_run"]) == (1, 1, True)
    assert _ids(cli) == ["month", "new", "old"]
    text = cli("requests", "prune", "--dry-run").stdout
    assert "Would delete 1 request rows" in text and "Would clear the text of 1 rows" in text


def test_before_overrides_the_retention_and_spend_history_stays(cli):
    before = cli.json("usage", "--days", "200")["total"]
    data = cli.json("requests", "prune", "--before", days_ago(10)[:10])
    assert data["deleted"] == 2 and _ids(cli) == ["new"]
    after = cli.json("usage", "--days", "200")["total"]
    assert (after["requests"], after["cost_usd"]) == (before["requests"], before["cost_usd"])


def test_retention_off_prunes_nothing(cli, monkeypatch):
    monkeypatch.setenv("CIRCUIT_RETENTION_DAYS", "off")
    monkeypatch.setenv("CIRCUIT_CONTENT_RETENTION_DAYS", "off")
    assert "Retention is off" in cli("requests", "prune").stdout
    assert _ids(cli) == ["month", "new", "old"]


@pytest.mark.parametrize("args, message", [
    (["--before", "yesterday"], "--before must be a date"),
    (["--before", "2999-01-01"], "is in the future"),
])
def test_prune_refuses_a_bad_cutoff_with_exit_2(cli, args, message):
    assert message in one_line_error(cli("requests", "prune", *args, code=2))
    assert _ids(cli) == ["month", "new", "old"]


def test_prune_without_a_database_is_exit_2(tmp_path, monkeypatch):
    cli = Cli(tmp_path, monkeypatch)
    assert "no database" in one_line_error(cli("requests", "prune", code=2))


# -- export ------------------------------------------------------------------------------------

def test_export_jsonl_has_the_records_of_the_window_oldest_first(cli):
    out = cli("requests", "export", "--since", days_ago(60)[:10]).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["request_id"] for r in records] == ["month", "new"]
    assert records[0]["partial_text"] == "half an answer" and records[0]["stream"] is False
    assert records[0]["api"] == "chat"
    assert records[0] == cli.json("requests", "show", "month")


def test_export_csv_has_a_header_and_a_line_per_row(cli):
    out = cli("requests", "export", "--format", "csv", "--until", days_ago(10)[:10]).stdout
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == list(RECORD_FIELDS)
    assert [r[rows[0].index("request_id")] for r in rows[1:]] == ["old", "month"]


def test_export_parquet_writes_a_typed_file(cli, tmp_path):
    import pyarrow.parquet as pq

    target = tmp_path / "out.parquet"
    result = cli("requests", "export", "--format", "parquet", "--output", str(target))
    assert "Exported 3 requests" in result.stderr
    table = pq.read_table(target)
    assert table.column_names == list(RECORD_FIELDS)
    assert table.column("request_id").to_pylist() == ["old", "month", "new"]
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert table.column("cost_micros").to_pylist()[0] == 7_000_000
    assert not (tmp_path / "out.parquet.partial").exists()


def test_export_refuses_an_empty_window(cli):
    error = one_line_error(cli("requests", "export", "--since", "2026-11-02", "--until",
                               "2026-11-01", code=2))
    assert "--until" in error


def test_usage_on_a_database_from_before_the_rollups_asks_for_a_migration(cli):
    with sqlite3.connect(cli.db_path) as conn:
        conn.execute("DROP TABLE request_rollups")
    error = one_line_error(cli("usage", "--days", "7", code=2))
    assert "older schema" in error and "start the gateway once" in error
