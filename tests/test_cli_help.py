"""The `circuit` command as a whole: help that reads like a manual, and one-line usage errors."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli, one_line_error

COMMANDS = [("serve",), ("keys", "add"), ("keys", "list"), ("keys", "set"), ("keys", "revoke"),
            ("usage",), ("requests", "tail"), ("requests", "show"), ("config", "init"),
            ("config", "show"), ("config", "check")]


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
