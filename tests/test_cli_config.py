"""`circuit config init | show | check`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from circuit.config import Settings, declared_settings, load_settings
from tests.support.cli import ANSI_ESCAPE, Cli, one_line_error

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Cli:
    return Cli(tmp_path, monkeypatch)


# -- init -----------------------------------------------------------------------------------------

def test_init_writes_a_circuit_toml_that_loads_to_the_defaults(cli, monkeypatch):
    monkeypatch.delenv("CIRCUIT_DB_PATH")
    cli("config", "init")
    loaded = load_settings(environ={}, cwd=cli.folder)
    defaults = Settings()
    for f in declared_settings():
        if f.name != "config_path":
            assert getattr(loaded, f.name) == getattr(defaults, f.name), f.name


def test_init_comments_every_setting_with_its_help_and_variable(cli):
    cli("config", "init")
    text = (cli.folder / "circuit.toml").read_text()
    flat = " ".join(line.lstrip("# ") for line in text.splitlines())
    for f in declared_settings():
        if f.name != "config_path":
            assert f"(env: {f.metadata['env']})" in flat
            assert f.metadata["help"].split()[0] in flat


def test_init_leaves_secrets_commented_out(cli):
    cli("config", "init")
    values = tomllib.loads((cli.folder / "circuit.toml").read_text())
    assert "openai_api_key" not in values and "api_keys" not in values
    assert values["port"] == 8080 and values["provider"] == "mock"


def test_init_refuses_to_overwrite_without_force(cli):
    (cli.folder / "circuit.toml").write_text("port = 9999\n")
    assert "--force" in one_line_error(cli("config", "init", code=2))
    assert (cli.folder / "circuit.toml").read_text() == "port = 9999\n"


def test_init_force_overwrites(cli):
    (cli.folder / "circuit.toml").write_text("port = 9999\n")
    cli("config", "init", "--force")
    assert "port = 8080" in (cli.folder / "circuit.toml").read_text()


def test_init_into_a_missing_folder_exits_2(cli):
    assert "cannot write" in one_line_error(cli("config", "init", "nowhere/prod.toml", code=2))


def test_init_writes_to_the_path_given(cli):
    (cli.folder / "conf").mkdir()
    cli("config", "init", "conf/prod.toml")
    assert (cli.folder / "conf" / "prod.toml").is_file()


# -- show -----------------------------------------------------------------------------------------

def test_show_json_gives_value_variable_and_source_of_every_setting(cli, monkeypatch):
    monkeypatch.setenv("CIRCUIT_PORT", "9001")
    (cli.folder / "circuit.toml").write_text('log_level = "debug"\n')
    data = cli.json("--db", "flag.db", "config", "show")
    settings = data["settings"]
    assert set(settings) == {f.name for f in declared_settings()}
    assert settings["port"] == {"value": "9001", "env": "CIRCUIT_PORT", "source": "env"}
    assert settings["log_level"]["source"] == "toml"
    assert settings["db_path"] == {"value": "flag.db", "env": "CIRCUIT_DB_PATH",
                                   "source": "flag"}
    assert settings["provider"]["source"] == "default"
    assert data["config_path"] == str(cli.folder / "circuit.toml")
    assert data["prices"] == {}


def test_show_masks_secrets(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider-secret-value-1234")
    monkeypatch.setenv("CIRCUIT_API_KEYS", "sk-client-one-123,sk-client-two-456")
    for args in (("config", "show"), ("config", "show", "--json")):
        out = cli(*args).stdout
        assert "sk-provider-secret" not in out and "sk-client" not in out
    settings = cli.json("config", "show")["settings"]
    assert settings["openai_api_key"]["value"] == "****1234"
    assert settings["api_keys"]["value"] == "(2 keys)"


def test_show_prints_a_plain_table(cli):
    out = cli("config", "show").stdout
    assert "CIRCUIT_DB_PATH" in out and "default" in out
    assert ANSI_ESCAPE not in out


def test_show_with_broken_configuration_exits_2(cli, monkeypatch):
    monkeypatch.setenv("CIRCUIT_PORT", "eighty")
    assert "CIRCUIT_PORT" in one_line_error(cli("config", "show", code=2))


# -- check ----------------------------------------------------------------------------------------

def test_check_passes_a_valid_configuration(cli):
    cli("config", "init")
    assert "valid" in cli("config", "check").stdout


def test_check_fails_with_exit_1_and_one_line_naming_the_problem(cli, monkeypatch):
    monkeypatch.setenv("PROVIDER", "openai")
    line = one_line_error(cli("config", "check", code=1))
    assert "OPENAI_API_KEY is required" in line


def test_check_validates_the_price_table(cli):
    (cli.folder / "circuit.toml").write_text('[prices."my-model"]\ninput = 0.1\n')
    assert "my-model" in one_line_error(cli("config", "check", code=1))


def test_check_reads_the_file_named_by_the_global_config_option(cli):
    (cli.folder / "bad.toml").write_text("workers = 0\n")
    assert "workers" in one_line_error(cli("--config", "bad.toml", "config", "check", code=1))


def test_check_rejects_a_database_path_that_is_a_folder(cli, monkeypatch):
    monkeypatch.setenv("CIRCUIT_DB_PATH", str(cli.folder))
    assert "not a file" in one_line_error(cli("config", "check", code=1))


def test_check_json_reports_ok_and_error(cli, monkeypatch):
    assert cli.json("config", "check") == {"ok": True, "error": None, "config_path": None}
    monkeypatch.setenv("CIRCUIT_WORKERS", "0")
    data = cli.json("config", "check", code=1)
    assert data["ok"] is False and "CIRCUIT_WORKERS" in data["error"]


# -- check runs the validation serve runs ---------------------------------------------------------

ROUTED = """\
provider = "openai"

[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"

[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
api_key_env = "VLLM_KEY"

[routes]
"gpt-4o" = ["openai:gpt-4o", "local:llama"]
"""


@pytest.fixture
def routed(cli, monkeypatch) -> Cli:
    monkeypatch.delenv("VLLM_KEY", raising=False)
    (cli.folder / "circuit.toml").write_text(ROUTED)
    return cli


def test_check_fails_on_a_provider_whose_key_variable_is_unset(routed):
    line = one_line_error(routed("config", "check", code=1))
    assert "[providers.openai] api_key_env names OPENAI_API_KEY, which is not set" in line


def test_check_passes_once_every_key_variable_is_set(routed, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-upstream-openai")
    monkeypatch.setenv("VLLM_KEY", "sk-upstream-vllm")
    assert "valid" in routed("config", "check").stdout


def test_check_fails_on_a_route_to_an_unknown_provider(routed, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-upstream-openai")
    monkeypatch.setenv("VLLM_KEY", "sk-upstream-vllm")
    (routed.folder / "circuit.toml").write_text(ROUTED.replace("local:llama", "vllm:llama"))
    assert "unknown provider 'vllm'" in one_line_error(routed("config", "check", code=1))


def test_check_reads_a_route_to_a_built_in_provider_in_any_case(routed, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-upstream-openai")
    monkeypatch.setenv("VLLM_KEY", "sk-upstream-vllm")
    (routed.folder / "circuit.toml").write_text(ROUTED.replace("openai:gpt-4o", "OpenAI:gpt-4o"))
    assert "valid" in routed("config", "check").stdout


def test_check_fails_on_the_example_file_with_its_providers_uncommented_and_no_keys(cli):
    example = (ROOT / "circuit.toml.example").read_text()
    start = example.index("# [providers.openai]")
    uncommented = example[:start] + "\n".join(
        line.removeprefix("# ").removeprefix("#") for line in example[start:].splitlines())
    (cli.folder / "circuit.toml").write_text(uncommented)
    assert "api_key_env names OPENAI_API_KEY, which is not set" in one_line_error(
        cli("config", "check", code=1))
