"""`circuit usage`: per-group requests, failures, tokens, cost and latency, for people and CI."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from circuit.store.reports import percentile
from tests.support.cli import ANSI_ESCAPE, Cli, days_ago, one_line_error, record, today_at


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Cli:
    cli = Cli(tmp_path, monkeypatch)
    cli.add_key("alice")
    cli.add_key("bob")
    return cli


@pytest.fixture
def seeded(cli) -> Cli:
    """Today: alice 3 requests (one failed, one rejected), bob 1 on another model and provider.
    Earlier: alice 1 request two days ago, bob 1 ten days ago."""
    cli.seed(
        record("a1", key_name="alice", tokens_input=100, tokens_output=50, cost_micros=1_000,
               latency_ms=100.0, timestamp=today_at(0, 1)),
        record("a2", key_name="alice", status="failed", status_code=502, tokens_input=10,
               tokens_output=0, cost_micros=2_000, latency_ms=300.0, timestamp=today_at(0, 2)),
        record("a3", key_name="alice", status="rejected", status_code=429, tokens_input=0,
               tokens_output=0, cost_micros=None, latency_ms=1.0, timestamp=today_at(0, 3)),
        record("b1", key_name="bob", model="gpt-4o", provider="openai", tokens_input=7,
               tokens_output=3, cost_micros=500_000, latency_ms=50.0, timestamp=today_at(0, 4)),
        record("a0", key_name="alice", cost_micros=4_000_000, timestamp=days_ago(2)),
        record("b0", key_name="bob", cost_micros=8_000_000, timestamp=days_ago(10)),
    )
    return cli


def by_group(data: dict) -> dict:
    return {g["group"]: g for g in data["groups"]}


def test_default_window_is_today_utc(seeded):
    data = seeded.json("usage")
    assert data["since"] == today_at(0) and data["until"] is None
    assert data["total"]["requests"] == 4


def test_json_groups_by_key_with_counts_tokens_cost_and_latency(seeded):
    data = seeded.json("usage", "--today")
    assert data["by"] == "key" and data["key"] is None
    assert [g["group"] for g in data["groups"]] == ["bob", "alice"], "costliest first"
    assert by_group(data)["alice"] == {
        "group": "alice", "requests": 3, "failed": 1, "rejected": 1, "tokens_in": 110,
        "tokens_out": 50, "cost_usd": 0.003, "unpriced": 0, "p50_ms": 100.0, "p95_ms": 300.0}


def test_json_total_sums_every_group(seeded):
    total = seeded.json("usage", "--today")["total"]
    assert total == {"requests": 4, "failed": 1, "rejected": 1, "tokens_in": 117,
                     "tokens_out": 53, "cost_usd": 0.503, "unpriced": 0, "p50_ms": 100.0,
                     "p95_ms": 300.0}


def test_json_has_the_fail_over_fields_even_without_a_gate(seeded):
    data = seeded.json("usage")
    assert data["fail_over_usd"] is None and data["over"] is False


@pytest.mark.parametrize(("by", "groups"), [("model", {"gpt-4o-mini", "gpt-4o"}),
                                            ("provider", {"mock", "openai"})])
def test_by_model_and_by_provider_group_accordingly(seeded, by, groups):
    data = seeded.json("usage", "--by", by)
    assert data["by"] == by and set(by_group(data)) == groups


def test_by_day_lists_days_in_order(seeded):
    data = seeded.json("usage", "--days", "3", "--by", "day")
    assert [g["group"] for g in data["groups"]] == [days_ago(2)[:10], today_at(0)[:10]]


def test_days_counts_today_as_the_first_day(seeded):
    assert seeded.json("usage", "--days", "1")["total"]["requests"] == 4
    assert seeded.json("usage", "--days", "3")["total"]["requests"] == 5
    assert seeded.json("usage", "--days", "11")["total"]["requests"] == 6


def test_since_and_until_bound_the_window(seeded):
    data = seeded.json("usage", "--since", days_ago(3)[:10], "--until", today_at(0)[:10])
    assert data["total"]["requests"] == 1 and data["total"]["cost_usd"] == 4.0


def test_since_accepts_an_iso_time(seeded):
    data = seeded.json("usage", "--since", today_at(0, 2).replace(".000Z", "Z"))
    assert data["total"]["requests"] == 3


def test_key_filter_reports_only_that_key(seeded):
    data = seeded.json("usage", "--key", "bob", "--by", "model")
    assert data["key"] == "bob" and data["total"]["requests"] == 1
    assert list(by_group(data)) == ["gpt-4o"]


def test_latency_percentiles_are_nearest_rank_and_leave_rejected_out(cli):
    cli.seed(*(record(f"r{i}", latency_ms=float(i)) for i in range(1, 21)),
             record("fast-reject", status="rejected", latency_ms=0.1))
    total = cli.json("usage")["total"]
    assert (total["p50_ms"], total["p95_ms"]) == (10.0, 19.0)


def test_percentile_of_nothing_is_none_and_of_one_value_is_that_value():
    assert percentile([], 95) is None
    assert percentile([4.0], 50) == percentile([4.0], 95) == 4.0


def test_requests_on_unpriced_models_are_counted(cli):
    cli.seed(record("u1", model="homegrown", cost_micros=None, tokens_input=5))
    assert cli.json("usage")["total"]["unpriced"] == 1
    assert "no price" in cli("usage").stdout


def test_a_group_used_only_on_unpriced_models_shows_unpriced_never_zero(cli):
    cli.seed(record("u1", key_name="alice", model="homegrown", cost_micros=None))
    out = cli("usage").stdout
    alice = next(line for line in out.splitlines() if line.strip().startswith("alice"))
    assert "unpriced" in alice and "$0" not in alice


def test_a_group_partly_unpriced_marks_its_cost_with_the_footnote(cli):
    cli.seed(record("p1", key_name="alice", cost_micros=2_000),
             record("u1", key_name="alice", model="homegrown", cost_micros=None))
    out = cli("usage").stdout
    alice = next(line for line in out.splitlines() if line.strip().startswith("alice"))
    assert "$0.002000*" in alice
    assert "* 1 request(s) used a model with no price" in out


def test_the_unpriced_footer_prints_the_price_table_to_add(cli):
    cli.seed(record("u1", model="homegrown", cost_micros=None))
    assert '[prices."MODEL"] in circuit.toml' in cli("usage").stdout
    by_model = cli("usage", "--by", "model").stdout
    assert '[prices."homegrown"] in circuit.toml' in " ".join(by_model.split())


def test_empty_window_reports_zeros(cli):
    data = cli.json("usage")
    assert data["groups"] == []
    assert data["total"]["requests"] == 0 and data["total"]["p50_ms"] is None


def test_table_has_a_total_row_and_no_ansi_codes_when_piped(seeded):
    out = seeded("usage").stdout
    assert "Usage by key" in out and "Total" in out and "alice" in out and "$0.503000" in out
    assert ANSI_ESCAPE not in out


def test_csv_has_a_header_and_one_row_per_group(seeded):
    rows = list(csv.reader(io.StringIO(seeded("usage", "--csv", "--by", "model").stdout)))
    assert rows[0] == ["model", "requests", "failed", "rejected", "tokens_in", "tokens_out",
                       "cost_usd", "unpriced", "p50_ms", "p95_ms"]
    assert sorted(r[0] for r in rows[1:]) == ["gpt-4o", "gpt-4o-mini"]


def test_fail_over_exits_1_when_the_total_cost_is_over(seeded):
    result = seeded("usage", "--fail-over", "0.5", "--json", code=1)
    assert "over $0.500000" in one_line_error(result)
    data = json.loads(result.stdout)
    assert data["over"] is True and data["fail_over_usd"] == 0.5


def test_fail_over_exits_0_when_the_total_cost_is_not_over(seeded):
    assert seeded.json("usage", "--fail-over", "0.503")["over"] is False


@pytest.mark.parametrize("args", [("--since", "yesterday"), ("--since", "2026-13-01"),
                                  ("--until", "soon")])
def test_malformed_date_exits_2(seeded, args):
    assert args[0] in one_line_error(seeded("usage", *args, code=2))


def test_until_before_since_exits_2(seeded):
    result = seeded("usage", "--since", "2026-11-20", "--until", "2026-11-10", code=2)
    assert "--until" in one_line_error(result)


@pytest.mark.parametrize("args", [("--today", "--days", "2"), ("--since", "2026-01-01",
                                                               "--today"),
                                  ("--json", "--csv")])
def test_conflicting_flags_exit_2(seeded, args):
    assert "cannot be combined" in one_line_error(seeded("usage", *args, code=2))


def test_unknown_key_exits_2(seeded):
    assert "no key named 'carol'" in one_line_error(seeded("usage", "--key", "carol", code=2))


def test_a_key_known_only_from_its_requests_is_accepted(cli):
    cli.seed(record("c1", key_name="config-1"))
    assert cli.json("usage", "--key", "config-1")["total"]["requests"] == 1


def test_bad_group_is_a_usage_error(seeded):
    assert "--by" in one_line_error(seeded("usage", "--by", "colour", code=2))


def test_missing_database_exits_2_and_creates_nothing(tmp_path, monkeypatch):
    cli = Cli(tmp_path, monkeypatch)
    assert "no database at" in one_line_error(cli("usage", code=2))
    assert not cli.db_path.exists()


def test_a_database_without_circuit_tables_exits_2(tmp_path, monkeypatch):
    cli = Cli(tmp_path, monkeypatch)
    sqlite3.connect(cli.db_path).execute("CREATE TABLE other (x)").connection.close()
    assert "not a Circuit database" in one_line_error(cli("usage", code=2))


def test_by_api_shows_each_door_with_its_tokens_and_cost(cli):
    cli.seed(record("e1", api="embeddings", upstream_api="embeddings",
                    model="text-embedding-3-small", tokens_input=1_000, tokens_output=0,
                    cost_micros=20),
             record("c1", api="completions", upstream_api="completions"),
             record("s1", api="chat_store", upstream_api="chat_store", tokens_input=0,
                    tokens_output=0, cost_micros=None),
             record("h1"))
    groups = by_group(cli.json("usage", "--by", "api"))
    assert set(groups) == {"embeddings", "completions", "chat_store", "chat"}
    assert (groups["embeddings"]["tokens_in"], groups["embeddings"]["cost_usd"]) == (1000,
                                                                                     0.00002)
