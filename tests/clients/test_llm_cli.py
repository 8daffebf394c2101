"""simonw's `llm` CLI with an OpenAI-compatible model that points at the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.support.gateway_server import CLIENT_KEY

LLM = Path(sys.executable).with_name("llm")
DOG_SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
    "breed": {"type": "string", "enum": ["collie", "pug", "poodle"]}},
    "required": ["name", "age", "breed"], "additionalProperties": False}


@pytest.fixture
def llm_env(mock_gateway, tmp_path) -> dict[str, str]:
    """A fresh LLM_USER_PATH whose extra-openai-models.yaml names the gateway."""
    (tmp_path / "extra-openai-models.yaml").write_text(
        "- model_id: circuit-mock\n"
        "  model_name: gpt-4o-mini\n"
        f"  api_base: {mock_gateway.url}/v1\n"
        "  api_key_name: circuit\n"
        "  supports_schema: true\n"
        "  supports_tools: true\n")
    (tmp_path / "keys.json").write_text(json.dumps({"circuit": CLIENT_KEY}))
    return {**os.environ, "LLM_USER_PATH": str(tmp_path)}


def _llm(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(LLM), "-m", "circuit-mock", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("streaming", [[], ["--no-stream"]], ids=["stream", "no-stream"])
def test_schema_prompt_prints_json_that_meets_the_schema(llm_env, streaming):
    out = _llm(llm_env, "--schema", json.dumps(DOG_SCHEMA), *streaming, "Invent a dog")
    jsonschema.validate(json.loads(out), DOG_SCHEMA)


def test_concise_schema_syntax_works(llm_env):
    out = _llm(llm_env, "--schema", "name, age int, bio: one sentence", "Invent a dog")
    assert set(json.loads(out)) == {"name", "age", "bio"}


def test_a_tool_is_run_and_its_result_answered(llm_env):
    function = "def get_weather(city: str) -> str:\n    return f'Sunny in {city}'\n"
    out = _llm(llm_env, "--functions", function, "What is the weather in Paris?")
    assert "The tool returned: Sunny in city" in out
