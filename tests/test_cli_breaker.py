"""`circuit breaker`: status of every gateway process, history, and commands."""

from __future__ import annotations

import pytest

from circuit.store.protection_rows import BreakerEventRow, BreakerStateRow
from circuit.store.timestamps import utc_now
from tests.support.cli import Cli, one_line_error


@pytest.fixture
def cli(tmp_path, monkeypatch):
    return Cli(tmp_path, monkeypatch)


def _state(provider: str, state: str, holder: str = "host:1", updated_at: str | None = None,
           failures: int = 0) -> BreakerStateRow:
    return BreakerStateRow(provider, holder, state, utc_now() if state == "open" else None,
                           utc_now() if state == "open" else None, 10, failures,
                           updated_at or utc_now())


def _save(cli, *states, events=()):
    store = cli.store()
    try:
        store.save_breakers(list(events), list(states))
    finally:
        store.close()


def test_status_json_reports_each_provider_as_open_as_its_most_open_process(cli):
    _save(cli, _state("openai", "closed", "a:1"), _state("openai", "open", "b:2", failures=7),
          _state("anthropic", "closed", "a:1"))
    data = cli.json("breaker", "status")
    states = {p["provider"]: p["state"] for p in data["providers"]}
    assert states == {"openai": "open", "anthropic": "closed"}
    assert data["any_open"] is True
    openai = next(p for p in data["providers"] if p["provider"] == "openai")
    assert {h["holder"]: h["failures_in_window"] for h in openai["holders"]} == {"a:1": 0,
                                                                                "b:2": 7}


def test_fail_if_open_exits_1_when_a_breaker_is_open(cli):
    _save(cli, _state("openai", "open"))
    cli("breaker", "status", "--fail-if-open", code=1)


def test_fail_if_open_exits_0_when_all_are_closed(cli):
    _save(cli, _state("openai", "closed"))
    cli("breaker", "status", "--fail-if-open", code=0)


def test_rows_of_stopped_processes_are_left_out_unless_asked_for(cli):
    _save(cli, _state("openai", "open", updated_at="2020-01-01T00:00:00.000Z"))
    assert cli.json("breaker", "status")["providers"] == []
    cli("breaker", "status", "--fail-if-open", code=0)
    holders = cli.json("breaker", "status", "--all")["providers"][0]["holders"]
    assert holders[0]["live"] is False


def test_status_table_for_people_names_state_and_process(cli):
    _save(cli, _state("openai", "open", "gw-1:42"))
    shown = cli("breaker", "status").stdout
    assert "openai" in shown and "open" in shown and "gw-1:42" in shown
    assert "\x1b[" not in shown


def test_history_lists_changes_newest_first(cli):
    _save(cli, events=[
        BreakerEventRow("openai", "h:1", "closed", "open", "5 consecutive failures",
                        "2026-11-26T01:00:00.000Z"),
        BreakerEventRow("openai", "h:1", "open", "half_open", "cool-down over",
                        "2026-11-26T01:00:15.000Z")])
    events = cli.json("breaker", "history")["events"]
    assert [(e["from"], e["to"]) for e in events] == [("open", "half_open"), ("closed", "open")]
    assert "5 consecutive failures" in cli("breaker", "history", "openai").stdout


def test_reset_and_open_queue_commands_for_running_gateways(cli):
    _save(cli, _state("openai", "open"))
    assert cli.json("breaker", "reset", "openai")["action"] == "reset"
    cli("breaker", "open", "openai")
    store = cli.store()
    try:
        assert [c.action for c in store.breaker_commands_after(0)] == ["reset", "open"]
    finally:
        store.close()


def test_a_command_for_an_unknown_provider_is_a_usage_error(cli):
    _save(cli, _state("openai", "closed"))
    result = cli("breaker", "reset", "opena", code=2)
    assert "unknown provider 'opena'" in one_line_error(result)


def test_status_without_a_database_is_a_usage_error(cli):
    result = cli("breaker", "status", code=2)
    assert "no database" in one_line_error(result)
