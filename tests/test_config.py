"""Settings come from defaults < circuit.toml < .env < environment < flags; bad ones stop start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from circuit.config import ConfigError, declared_settings, load_settings
from circuit.providers.registry import provider_specs

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_apply_with_no_configuration(tmp_path):
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.provider == "mock"
    assert settings.db_path == "data/circuit.db"
    assert settings.sources == {}


def test_each_source_overrides_the_one_before(tmp_path):
    (tmp_path / "circuit.toml").write_text('port = 9001\nprovider = "mock"\nhost = "0.0.0.0"\n'
                                           'db_path = "toml.db"\n')
    (tmp_path / ".env").write_text("CIRCUIT_PORT=9002\nCIRCUIT_DB_PATH=dotenv.db\n")
    settings = load_settings({"port": 9004}, environ={"CIRCUIT_PORT": "9003"}, cwd=tmp_path)
    assert settings.port == 9004 and settings.sources["port"] == "flag"
    assert settings.db_path == "dotenv.db" and settings.sources["db_path"] == ".env"
    assert settings.host == "0.0.0.0" and settings.sources["host"] == "toml"
    assert load_settings(environ={"CIRCUIT_PORT": "9003"}, cwd=tmp_path).port == 9003


def test_config_file_can_be_named_by_environment(tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text("daily_usd_limit = 2.5\n")
    settings = load_settings(environ={"CIRCUIT_CONFIG": str(path)}, cwd=tmp_path)
    assert settings.daily_usd_limit == 2.5


def test_price_overrides_come_from_the_toml(tmp_path):
    (tmp_path / "circuit.toml").write_text('[prices."my-model"]\ninput = 1.0\noutput = 2.0\n')
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.prices["my-model"]["output"] == 2.0


@pytest.mark.parametrize("environ, fragment", [
    ({"PROVIDER": "bedrock"}, "PROVIDER must be one of anthropic, mock, openai"),
    ({"CIRCUIT_DAILY_USD_LIMIT": "lots"}, "CIRCUIT_DAILY_USD_LIMIT must be a number"),
    ({"PROVIDER": "openai"}, "OPENAI_API_KEY is required when PROVIDER=openai"),
    ({"CIRCUIT_PORT": "eighty"}, "CIRCUIT_PORT must be a whole number"),
    ({"CIRCUIT_CONFIG": "missing.toml"}, "CIRCUIT_CONFIG: no such file"),
    ({"CIRCUIT_API_KEYS": "short"}, "CIRCUIT_API_KEYS each key must be at least 8"),
])
def test_invalid_settings_raise_one_line_naming_the_setting(tmp_path, environ, fragment):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ, cwd=tmp_path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("written", ["MOCK", "Mock", "mock", " mock "])
def test_a_built_in_provider_name_is_read_in_any_case_from_the_environment(tmp_path, written):
    assert load_settings(environ={"PROVIDER": written}, cwd=tmp_path).provider == "mock"


def test_a_built_in_provider_name_is_read_in_any_case_from_dotenv_toml_and_flags(tmp_path):
    (tmp_path / ".env").write_text("PROVIDER=OPENAI\nOPENAI_API_KEY=sk-upstream-key\n")
    assert load_settings(environ={}, cwd=tmp_path).provider == "openai"
    (tmp_path / ".env").unlink()
    (tmp_path / "circuit.toml").write_text('provider = "Anthropic"\n')
    settings = load_settings(environ={"ANTHROPIC_API_KEY": "sk-ant-key"}, cwd=tmp_path)
    assert settings.provider == "anthropic"
    assert load_settings({"provider": "MOCK"}, environ={}, cwd=tmp_path).provider == "mock"


def test_openai_in_capitals_still_needs_its_key(tmp_path):
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is required when PROVIDER=openai"):
        load_settings(environ={"PROVIDER": "OPENAI"}, cwd=tmp_path)


def test_a_declared_provider_is_matched_exactly_before_any_case_folding(tmp_path):
    (tmp_path / "circuit.toml").write_text(
        'provider = "Local"\n[providers.Local]\nkind = "MOCK"\n')
    assert load_settings(environ={}, cwd=tmp_path).provider == "Local"


@pytest.mark.parametrize(("variable", "written", "read"), [
    ("CIRCUIT_LOG_LEVEL", "WARNING", "warning"), ("CIRCUIT_LOG_FORMAT", "JSON", "json")])
def test_enumerated_settings_are_read_in_any_case(tmp_path, variable, written, read):
    settings = load_settings(environ={variable: written}, cwd=tmp_path)
    assert getattr(settings, variable.removeprefix("CIRCUIT_").lower()) == read


def test_a_client_key_of_exactly_8_characters_is_accepted(tmp_path):
    assert load_settings(environ={"CIRCUIT_API_KEYS": "test-key"},
                         cwd=tmp_path).api_keys == ("test-key",)


def test_unknown_toml_setting_is_refused(tmp_path):
    (tmp_path / "circuit.toml").write_text("provdier = 'mock'\n")
    with pytest.raises(ConfigError, match="unknown setting 'provdier'"):
        load_settings(environ={}, cwd=tmp_path)


def test_daily_limit_can_be_switched_off(tmp_path):
    assert load_settings(environ={"CIRCUIT_DAILY_USD_LIMIT": "off"},
                         cwd=tmp_path).daily_usd_limit is None


def test_secrets_are_masked_when_described(tmp_path):
    settings = load_settings(environ={"OPENAI_API_KEY": "sk-provider-very-secret-1234",
                                      "CIRCUIT_API_KEYS": "client-key-secret-1"}, cwd=tmp_path)
    shown = " ".join(value for _, _, value, _ in settings.describe())
    assert "very-secret" not in shown and "client-key-secret" not in shown


def test_the_readme_holds_the_configuration_reference_generated_from_the_declarations():
    from circuit.settings_reference import readme_block

    readme = (ROOT / "README.md").read_text()
    assert readme_block() in readme, "regenerate it: circuit config reference"
    assert all(f.metadata["env"] in readme_block() for f in declared_settings())


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "uvicorn", "circuit.main:app", "--port", "0"],
    [sys.executable, "-m", "circuit.cli", "serve", "--port", "0"],
])
def test_bad_configuration_stops_start_up_with_one_line_and_no_traceback(tmp_path, command):
    env = {**os.environ, "PROVIDER": "openai", "OPENAI_API_KEY": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "OPENAI_API_KEY is required when PROVIDER=openai" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_providers_output_limit_is_max_completion_tokens_unless_it_is_chat_only(tmp_path):
    (tmp_path / "circuit.toml").write_text(
        '[providers.openai]\nkind = "openai"\napi_key_env = "K"\n'
        '[providers.local]\nkind = "openai"\napi_key_env = "K"\nresponses = false\n'
        '[providers.azure]\nkind = "openai"\napi_key_env = "K"\nresponses = false\n'
        'max_tokens_field = "max_completion_tokens"\n')
    specs = provider_specs(load_settings(environ={"K": "sk-test-key"}, cwd=tmp_path))
    assert {name: spec.max_tokens_field for name, spec in specs.items() if name != "mock"} == {
        "openai": "max_completion_tokens", "local": "max_tokens",
        "azure": "max_completion_tokens"}


def test_a_providers_output_limit_is_one_of_two_names(tmp_path):
    (tmp_path / "circuit.toml").write_text(
        '[providers.local]\nkind = "openai"\napi_key_env = "K"\nmax_tokens_field = "limit"\n')
    with pytest.raises(ConfigError, match=r"\[providers.local\] max_tokens_field must be one"):
        provider_specs(load_settings(environ={"K": "sk-test-key"}, cwd=tmp_path))
