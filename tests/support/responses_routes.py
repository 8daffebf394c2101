"""A gateway whose routes reach the Responses door's translated targets: a chat-only
OpenAI-compatible provider (`responses = false`), Anthropic, a route mixing OpenAI with
Anthropic, and routes whose first target is chat-only; both upstreams are the session's fakes."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway_server import GatewayServer

CONFIG = """
provider = "openai"

[providers.openai]
kind = "openai"
base_url = "{openai}"
api_key_env = "TEST_OPENAI_KEY"

[providers.local]
kind = "openai"
base_url = "{openai}"
api_key_env = "TEST_OPENAI_KEY"
responses = false
free = true

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "TEST_ANTHROPIC_KEY"

[routes]
"local-llama" = ["local:llama-3.1-8b"]
"claude" = ["anthropic:claude-sonnet-4-5"]
"gpt-or-claude" = ["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"]
"chat-then-openai" = ["local:llama-3.1-8b", "openai:gpt-4o-mini"]
"chat-then-claude" = ["local:llama-3.1-8b", "anthropic:claude-sonnet-4-5"]
"claude-then-chat" = ["anthropic:claude-sonnet-4-5", "local:llama-3.1-8b"]
"claude-then-gpt" = ["anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini"]
"""

WEATHER = {"type": "function", "name": "weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def translated_gateway(tmp: Path, openai_url: str, anthropic_url: str) -> GatewayServer:
    """Started; the caller stops it."""
    (tmp / "circuit.toml").write_text(CONFIG.format(openai=openai_url, anthropic=anthropic_url))
    return GatewayServer(tmp, TEST_OPENAI_KEY="sk-openai-test-key",
                         TEST_ANTHROPIC_KEY="sk-ant-test-key", CIRCUIT_RETRY_MAX_ATTEMPTS=1,
                         CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000,
                         CIRCUIT_BREAKER_MINIMUM_CALLS=10_000).start()
