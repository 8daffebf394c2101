"""The `circuit` command as a whole: help that reads like a manual, and one-line usage errors."""

from __future__ import annotations

import re

import pytest

from tests.support.cli import Cli, one_line_error

COMMANDS = [("serve",), ("keys", "add"), ("keys", "list"), ("keys", "set"), ("keys", "revoke"),
            ("usage",), ("requests", "tail"), ("requests", "show"), ("config", "init"),
            ("config", "show"), ("config", "check")]
GROUPS = [(), ("keys",), ("requests",), ("config",), ("breaker",)]
BREAKER = [("breaker", "status"), ("breaker", "history"), ("breaker", "reset"),
           ("breaker", "open")]


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Cli:
    return Cli(tmp_path, monkeypatch)


def test_root_help_lists_the_command_groups_and_the_exit_codes(cli):
    out = cli("--help").stdout
    for group in ("serve", "keys", "usage", "requests", "config", "--db", "--config"):
        assert group in out
    assert "Exit codes" in out and "--json" in out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself_with_an_example(cli, command):
    out = cli(*command, "--help").stdout
    assert "Example" in out and "circuit " in out


@pytest.mark.parametrize("command", [c for c in COMMANDS if c[-1] not in ("serve", "init")],
                         ids=" ".join)
def test_every_read_command_has_json(cli, command):
    assert "--json" in cli(*command, "--help").stdout


@pytest.mark.parametrize(("args", "words"), [
    (("keys", "add"), "Missing argument 'NAME'"),
    (("keys", "list", "--colour"), "No such option: --colour"),
    (("bogus",), "No such command 'bogus'"),
    (("usage", "--days", "many"), "--days"),
])
def test_usage_errors_are_one_line_with_exit_2(cli, args, words):
    line = one_line_error(cli(*args, code=2))
    assert words in line and "--help" in line


def test_no_arguments_prints_the_help(cli):
    result = cli(code=2)
    assert "Usage" in result.stdout and "keys" in result.stdout


@pytest.mark.parametrize("command", COMMANDS + GROUPS + BREAKER, ids=lambda c: " ".join(c) or "-")
def test_help_has_no_rendering_artefacts(cli, command):
    out = cli(*command, "--help").stdout
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert not re.search(r"\{\w+\}", usage), usage
    assert "[[" not in out and "<bool>" not in out and "<str>" not in out


@pytest.mark.parametrize(("command", "usage"), [
    (("keys", "add"), "circuit keys add [OPTIONS] NAME"),
    (("config", "init"), "circuit config init [OPTIONS] [PATH]"),
    (("breaker", "reset"), "circuit breaker reset [OPTIONS] PROVIDER"),
    (("requests", "show"), "circuit requests show [OPTIONS] REQUEST_ID"),
])
def test_usage_lines_read_like_a_manual(cli, command, usage):
    assert usage in cli(*command, "--help").stdout


def test_the_keys_add_example_keeps_a_circuit_key_out_of_openai_api_key(cli):
    out = cli("keys", "add", "--help").stdout
    assert "OPENAI_API_KEY=" not in out and "export CIRCUIT_KEY=" in out


def test_one_configured_key_is_one_key(cli, monkeypatch):
    monkeypatch.setenv("CIRCUIT_API_KEYS", "sk-only-configured-key")
    assert "(1 key)" in cli("config", "show").stdout
    monkeypatch.setenv("CIRCUIT_API_KEYS", "sk-configured-key-1,sk-configured-key-2")
    assert "(2 keys)" in cli("config", "show").stdout
