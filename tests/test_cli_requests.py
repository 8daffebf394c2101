"""`circuit requests show` and `circuit requests tail`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuit.store.reports import RECORD_FIELDS
from tests.support.cli import ANSI_ESCAPE, Cli, one_line_error, record

CIRCUIT = str(Path(sys.executable).parent / "circuit")


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Cli:
    cli = Cli(tmp_path, monkeypatch)
    cli.add_key("alice")
    return cli


def broken_stream(request_id: str = "req-broken"):
    return record(request_id, stream=True, status="failed", error_code="upstream_error",
                  error_message="The upstream stream ended early",
                  partial_text="Once upon a ti", tokens_output=4, usage_source="local")


# -- show -----------------------------------------------------------------------------------------

def test_show_json_is_the_whole_record_partial_text_included(cli):
    cli.seed(broken_stream())
    data = cli.json("requests", "show", "req-broken")
    assert set(RECORD_FIELDS) <= set(data)
    assert data["request_id"] == "req-broken" and data["status"] == "failed"
    assert data["partial_text"] == "Once upon a ti" and data["stream"] is True
    assert data["cost_micros"] == 1000 and data["cost_usd"] == 0.001


def test_show_prints_every_field_and_the_partial_text_for_people(cli):
    cli.seed(broken_stream())
    out = cli("requests", "show", "req-broken").stdout
    for text in ("req-broken", "upstream_error", "The upstream stream ended early",
                 "Once upon a ti", "partial text", "$0.001000"):
        assert text in out
    assert ANSI_ESCAPE not in out


def test_show_of_an_unknown_id_exits_2(cli):
    cli.seed(record("known"))
    assert "no request with id 'unknown'" in one_line_error(
        cli("requests", "show", "unknown", code=2))


def test_show_json_of_a_reused_id_prints_the_newest_with_a_note(cli):
    cli.seed(record("dup", tokens_output=1), record("dup", tokens_output=2))
    result = cli("requests", "show", "dup", "--json")
    assert json.loads(result.stdout)["tokens_output"] == 2
    assert "2 records share this request id" in result.stderr


def test_show_without_a_database_exits_2(tmp_path, monkeypatch):
    cli = Cli(tmp_path, monkeypatch)
    assert "no database at" in one_line_error(cli("requests", "show", "x", code=2))
    assert not cli.db_path.exists()


# -- tail -----------------------------------------------------------------------------------------

def test_tail_shows_the_last_10_oldest_first(cli):
    cli.seed(*(record(f"r{i:02}") for i in range(15)))
    lines = cli("requests", "tail", "--no-follow").stdout.strip().splitlines()[1:]
    assert [line.split()[2] for line in lines] == [f"r{i:02}" for i in range(5, 15)]


def test_tail_line_has_time_id_key_model_provider_stream_status_tokens_cost_and_latency(cli):
    cli.seed(record("r1", tokens_input=1234, tokens_output=56, cost_micros=2500,
                    latency_ms=87.0, timestamp="2026-11-26T10:11:12.345Z", stream=True,
                    provider="anthropic"))
    line = cli("requests", "tail", "--no-follow").stdout.strip().splitlines()[-1]
    for part in ("2026-11-26  10:11:12", "r1", "alice", "gpt-4o-mini", "anthropic", "stream",
                 "ok", "1,234→56", "$0.002500", "87ms"):
        assert part in line
    assert ANSI_ESCAPE not in line


def test_tail_starts_with_a_header_naming_its_columns(cli):
    cli.seed(record("r1"))
    header = cli("requests", "tail", "--no-follow").stdout.splitlines()[0]
    assert header.split() == ["DATE", "TIME", "REQUEST", "ID", "KEY", "MODEL", "DOOR",
                              "PROVIDER", "MODE", "STATUS", "TOKENS", "COST", "TIME", "IN",
                              "ERROR"]


def test_tail_piped_prints_every_column_and_the_whole_error_code(cli):
    # Not a terminal and no COLUMNS: a pipe has no width, so nothing is left out or cut.
    code = "upstream_response_too_large"
    cli.seed(record("ok-1"), record("failed-1", status="failed", error_code=code))
    lines = cli("requests", "tail", "--no-follow").stdout.splitlines()
    assert lines[0].split()[-1] == "ERROR"
    assert lines[-1].split()[-1] == code


def test_tail_piped_keeps_long_values_whole(cli):
    # A piped request id must paste into `requests show`: nothing is cut with "…".
    long_id, long_model = "req-with-a-really-long-client-chosen-id-0001", "gpt-4o-mini-2024-07-18"
    cli.seed(record(long_id, model=long_model))
    line = cli("requests", "tail", "--no-follow").stdout.splitlines()[-1]
    assert long_id in line.split() and long_model in line.split()
    assert "…" not in line


def test_tail_through_a_real_pipe_shows_the_error_column(cli):
    cli.seed(broken_stream())
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["CIRCUIT_DB_PATH"] = str(cli.db_path)
    piped = subprocess.run([CIRCUIT, "requests", "tail", "--no-follow"], capture_output=True,
                           text=True, env=env, cwd=cli.folder, timeout=60)
    header, line = piped.stdout.splitlines()
    assert header.endswith("ERROR") and line.endswith("upstream_error")


def test_tail_with_columns_set_still_fits_them(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    cli.seed(broken_stream())
    header = cli("requests", "tail", "--no-follow").stdout.splitlines()[0]
    assert "ERROR" not in header and len(header) <= 160


def test_tail_shows_the_door_and_the_wire_that_went_upstream(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    cli.seed(record("r1", api="embeddings", upstream_api="embeddings"),
             record("r2", api="messages", upstream_api="chat"))
    lines = cli("requests", "tail", "--no-follow").stdout.splitlines()
    assert "ERROR" in lines[0]
    assert " embeddings " in lines[1] and "messages→chat" in lines[2]


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_tail_fits_the_terminal_width_without_wrapping(cli, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    cli.seed(record("req_3f2a9c1b4d5e000000002a", key_name="a-rather-long-key-name",
                    model="claude-sonnet-4-5-20250929", status="client_disconnected",
                    error_code="client_disconnected", tokens_input=123_456,
                    tokens_output=78_901, cost_micros=None))
    lines = cli("requests", "tail", "--no-follow").stdout.splitlines()
    assert len(lines) == 2 and all(len(line) <= width for line in lines), lines
    assert "req_3f2a9c1b4d5e000000002a" in lines[1], "the request id is never cut"
    assert "disconnected" in lines[1]


def test_tail_at_80_columns_keeps_time_id_key_model_and_status(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    cli.seed(record("r1", timestamp="2026-11-26T10:11:12.345Z"))
    header, line = cli("requests", "tail", "--no-follow").stdout.splitlines()
    assert header.split() == ["TIME", "REQUEST", "ID", "KEY", "MODEL", "STATUS"]
    assert line.split() == ["10:11:12", "r1", "alice", "gpt-4o-mini", "ok"]


def test_tail_shows_an_unpriced_request_as_unpriced(cli):
    cli.seed(record("r1", model="homegrown", cost_micros=None),
             record("r2", status="rejected", status_code=401, tokens_input=0, tokens_output=0,
                    cost_micros=None, error_code="invalid_api_key"))
    unpriced, refused = cli("requests", "tail", "--no-follow").stdout.splitlines()[1:]
    assert "unpriced" in unpriced and "$0" not in unpriced
    assert "unpriced" not in refused and "$0" not in refused


def test_tail_filters_by_status_and_key(cli):
    cli.add_key("bob")
    cli.seed(record("ok-alice"), broken_stream("failed-alice"),
             record("failed-bob", key_name="bob", status="failed"))
    out = cli("requests", "tail", "--no-follow", "--status", "failed", "--key", "alice").stdout
    assert "failed-alice" in out and "ok-alice" not in out and "failed-bob" not in out


def test_tail_json_prints_one_record_per_line(cli):
    cli.seed(record("r1"), broken_stream("r2"))
    lines = cli("requests", "tail", "--no-follow", "--json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["request_id"] for r in records] == ["r1", "r2"]
    assert set(RECORD_FIELDS) <= set(records[0])
    assert records[1]["partial_text"] == "Once upon a ti"


def test_tail_of_an_unknown_key_exits_2(cli):
    assert "no key named 'zed'" in one_line_error(
        cli("requests", "tail", "--key", "zed", "--no-follow", code=2))


def test_tail_follows_new_records_until_ctrl_c(cli):
    cli.seed(record("before"))
    env = {**os.environ, "CIRCUIT_DB_PATH": str(cli.db_path)}
    # SIGINT as a terminal delivers it: a suite started in the background (`cmd &`) would
    # hand its children SIGINT ignored, and Ctrl-C could not reach them.
    follower = subprocess.Popen([CIRCUIT, "requests", "tail", "--json", "--status", "ok"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=cli.folder,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert json.loads(follower.stdout.readline())["request_id"] == "before"
        cli.seed(record("skipped", status="failed"), record("live-1"))
        cli.seed(record("live-2"))
        seen = [json.loads(follower.stdout.readline())["request_id"] for _ in range(2)]
        assert seen == ["live-1", "live-2"]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 0
        assert follower.stderr.read() == ""
    finally:
        follower.kill()
        follower.wait()


def test_tail_sees_a_record_within_a_second(cli):
    cli.seed(record("backlog"))
    env = {**os.environ, "CIRCUIT_DB_PATH": str(cli.db_path)}
    follower = subprocess.Popen([CIRCUIT, "requests", "tail", "--json", "-n", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=cli.folder)
    try:
        assert json.loads(follower.stdout.readline())["request_id"] == "backlog"  # started
        written = time.monotonic()
        cli.seed(record("prompt"))
        assert json.loads(follower.stdout.readline())["request_id"] == "prompt"
        # tail polls every 0.3 s; ten times that is the bound on a busy machine.
        assert time.monotonic() - written < 10 * 0.3
    finally:
        follower.kill()
        follower.wait()


@pytest.mark.parametrize("command", [("requests", "tail", "--no-follow"),
                                     ("requests", "show", "req-esc"), ("usage", "--by", "model")])
def test_escape_sequences_from_clients_and_upstreams_are_shown_not_obeyed(cli, command):
    # A model name is the client's to choose; a message and a partial answer the upstream's.
    cli.seed(record("req-esc", model="gpt\x1b[2J\x1b]0;owned\x07-4o", status="failed",
                    error_code="upstream_error", error_message="bad\x1b[31m red\r\x9b",
                    partial_text="text\x1b[1A over"))
    out = cli(*command).stdout
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x9b" not in out
    assert "\\x1b[2J" in out
