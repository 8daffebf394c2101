"""Named providers and routes, from settings: validated once at start, built into objects.

Providers come from `[providers.NAME]` tables (kind, base_url, api_key_env, timeouts, retry
policy), plus three implicit ones: `mock` always, `openai` when OPENAI_API_KEY is set (or
PROVIDER=openai), `anthropic` when ANTHROPIC_API_KEY is set. Routes map a model name to an
ordered list of `provider:model` targets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from circuit.accounting.tokens import TokenCounter
from circuit.config import BUILT_IN_PROVIDERS, ConfigError, Settings, provider_name
from circuit.parsers import (
    parse_choice,
    parse_flag,
    parse_http_url,
    parse_integer,
    parse_number,
    parse_text,
)
from circuit.providers.anthropic import AnthropicProvider
from circuit.providers.base import Provider, SizeLimits, Timeouts
from circuit.providers.mock import MockProvider
from circuit.providers.openai import OpenAIProvider
from circuit.resilience.retry import RetryPolicy

KINDS = BUILT_IN_PROVIDERS
#: The fields of a `[providers.NAME]` table, each with the parser settings use for its kind.
_FIELDS: dict[str, Callable[[Any], Any]] = {
    "kind": parse_choice(*KINDS), "base_url": parse_http_url, "api_key_env": parse_text,
    "free": parse_flag, "responses": parse_flag,
    "max_tokens_field": parse_choice("max_completion_tokens", "max_tokens"),
    **dict.fromkeys(("connect_timeout", "first_byte_timeout", "idle_timeout",
                     "backoff_initial", "backoff_max", "deadline"), parse_number(0.0)),
    **dict.fromkeys(("max_attempts", "default_max_tokens", "max_connections"),
                    parse_integer(1)),
}


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    kind: str
    base_url: str = ""
    api_key: str | None = field(default=None, repr=False)
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    default_max_tokens: int = 4096
    max_connections: int = 1000
    #: Costs nothing (the mock; a local model): serves unpriced models to budgeted keys.
    free: bool = False
    sizes: SizeLimits = SizeLimits()
    #: The upstream serves OpenAI's Responses API (`responses = false`: chat completions only).
    responses: bool = True
    #: The output limit of a translated request: `max_completion_tokens`, OpenAI's (it refuses
    #: `max_tokens` for o-series and gpt-5 models), unless the upstream is chat-only.
    max_tokens_field: str = "max_completion_tokens"


def provider_specs(settings: Settings) -> dict[str, ProviderSpec]:
    """Every configured provider by name; ConfigError names what is wrong."""
    timeouts = Timeouts(settings.connect_timeout, settings.first_byte_timeout,
                        settings.idle_timeout)
    retry = RetryPolicy(settings.retry_max_attempts, settings.retry_backoff_initial,
                        settings.retry_backoff_max, settings.request_deadline)
    sizes = SizeLimits(settings.max_upstream_response_bytes, settings.max_upstream_event_bytes)
    specs = {"mock": ProviderSpec("mock", "mock", timeouts=timeouts, retry=retry, free=True)}
    if settings.openai_api_key or settings.provider == "openai":
        specs["openai"] = ProviderSpec("openai", "openai", settings.openai_base_url,
                                       settings.openai_api_key, timeouts, retry, sizes=sizes)
    if settings.anthropic_api_key or settings.provider == "anthropic":
        specs["anthropic"] = ProviderSpec("anthropic", "anthropic", settings.anthropic_base_url,
                                          settings.anthropic_api_key, timeouts, retry,
                                          settings.anthropic_max_tokens, sizes=sizes)
    for name, table in settings.providers.items():
        specs[name] = replace(_spec_from_table(name, table, settings, timeouts, retry),
                              sizes=sizes)
    return specs


def _spec_from_table(name: str, table: Any, settings: Settings, timeouts: Timeouts,
                     retry: RetryPolicy) -> ProviderSpec:
    where = f"[providers.{name}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - _FIELDS.keys())
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r}")
    parsed = {}
    for key, value in table.items():
        try:
            parsed[key] = _FIELDS[key](value)
        except ValueError as exc:
            raise ConfigError(f"{where} {key} {exc}") from None
    table = parsed
    kind = table.get("kind", name.lower() if name.lower() in KINDS else None)
    if kind is None:
        raise ConfigError(f"{where} kind must be one of {', '.join(KINDS)}")
    defaults = {"openai": settings.openai_base_url, "anthropic": settings.anthropic_base_url,
                "mock": ""}
    base_url = table.get("base_url", defaults[kind])
    api_key = None
    if "api_key_env" in table:
        api_key = settings.provider_secrets.get(table["api_key_env"])
        if kind != "mock" and not api_key:
            raise ConfigError(f"{where} api_key_env names {table['api_key_env']}, "
                              "which is not set")
    elif kind != "mock":
        raise ConfigError(f"{where} needs api_key_env (the variable that holds its key)")
    responses = table.get("responses", kind == "openai")
    return ProviderSpec(
        name, kind, base_url, api_key,
        Timeouts(table.get("connect_timeout", timeouts.connect),
                 table.get("first_byte_timeout", timeouts.first_byte),
                 table.get("idle_timeout", timeouts.idle)),
        RetryPolicy(table.get("max_attempts", retry.max_attempts),
                    table.get("backoff_initial", retry.backoff_initial),
                    table.get("backoff_max", retry.backoff_max),
                    table.get("deadline", retry.deadline)),
        table.get("default_max_tokens", settings.anthropic_max_tokens),
        table.get("max_connections", 1000),
        table.get("free", kind == "mock"),
        responses=responses,
        max_tokens_field=table.get("max_tokens_field",
                                   "max_completion_tokens" if responses else "max_tokens"))


def route_table(settings: Settings,
                specs: Mapping[str, ProviderSpec]) -> dict[str, list[tuple[str, str]]]:
    """Model name -> [(provider, upstream model), ...], every provider checked to exist."""
    routes: dict[str, list[tuple[str, str]]] = {}
    for model, targets in settings.routes.items():
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets:
            raise ConfigError(f"[routes] {model!r} must be a list of \"provider:model\"")
        parsed = []
        for target in targets:
            provider, sep, upstream = str(target).partition(":")
            if not sep or not upstream:
                raise ConfigError(f"[routes] {model!r}: {target!r} is not \"provider:model\"")
            provider = provider_name(provider, specs)
            if provider not in specs:
                raise ConfigError(f"[routes] {model!r}: unknown provider {provider!r} "
                                  f"(known: {', '.join(sorted(specs))})")
            parsed.append((provider, upstream))
        routes[model] = parsed
    return routes


def build_provider(spec: ProviderSpec, counter: Callable[[], TokenCounter]) -> Provider:
    """The provider object a spec describes (not yet started); `counter` gives the mock its
    tokenizer (loaded only if a mock is started)."""
    if spec.kind == "mock":
        return MockProvider(counter, name=spec.name)
    if spec.kind == "anthropic":
        return AnthropicProvider(spec.name, spec.base_url, spec.api_key, spec.timeouts,
                                 default_max_tokens=spec.default_max_tokens,
                                 max_connections=spec.max_connections, sizes=spec.sizes)
    return OpenAIProvider(spec.name, spec.base_url, spec.api_key, spec.timeouts,
                          max_connections=spec.max_connections, sizes=spec.sizes,
                          responses=spec.responses, max_tokens_field=spec.max_tokens_field)
