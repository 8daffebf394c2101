"""Settings: defaults < circuit.toml < .env < environment < CLI flags.

Each setting is declared once, as a field of `Settings` with its environment variable, parser and
help text in the field's metadata; the loader, `circuit config show` and the README table all read
that one declaration.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from circuit.parsers import (
    parse_choice,
    parse_database_url,
    parse_integer,
    parse_key_list,
    parse_number,
    parse_optional,
    parse_redis_url,
    parse_text,
)


class ConfigError(Exception):
    """Invalid configuration; the message is one line that names the setting."""


def setting(default: Any, env: str, help: str, parse: Callable[[Any], Any] = parse_text,
            secret: bool = False) -> Any:
    """Declare a setting: its default, environment variable, parser and help."""
    return field(default=default,
                 metadata={"env": env, "help": help, "parse": parse, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one gateway process."""

    provider: str = setting("mock", "PROVIDER",
                            "Provider for models without a route: `mock`, `openai`, `anthropic` "
                            "or a name from `[providers]`.", parse_text)
    api_keys: tuple[str, ...] = setting(
        (), "CIRCUIT_API_KEYS",
        "Comma-separated client keys accepted besides those in the keys table "
        "(named `config-1`, `config-2`, …).", parse_key_list, secret=True)
    anthropic_api_key: str | None = setting(None, "ANTHROPIC_API_KEY",
                                            "Key for the Anthropic provider (enables it).",
                                            parse_optional(parse_text), secret=True)
    anthropic_base_url: str = setting("https://api.anthropic.com", "ANTHROPIC_BASE_URL",
                                      "Base URL of the Anthropic Messages API.")
    anthropic_max_tokens: int = setting(4096, "ANTHROPIC_DEFAULT_MAX_TOKENS",
                                        "`max_tokens` sent to Anthropic when the client gives "
                                        "none (Anthropic requires one).", parse_integer(1))
    retry_max_attempts: int = setting(3, "CIRCUIT_RETRY_MAX_ATTEMPTS",
                                      "Calls per target for a retryable failure, the first "
                                      "included (1: no retries).", parse_integer(1))
    retry_backoff_initial: float = setting(0.25, "CIRCUIT_RETRY_BACKOFF_INITIAL",
                                           "Seconds: the cap of the first retry's random "
                                           "delay; it doubles each retry.", parse_number(0.0))
    retry_backoff_max: float = setting(8.0, "CIRCUIT_RETRY_BACKOFF_MAX",
                                       "Seconds: no retry delay is longer.", parse_number(0.0))
    request_deadline: float = setting(60.0, "CIRCUIT_REQUEST_DEADLINE",
                                      "Seconds from a request's arrival after which no new "
                                      "attempt or fallback starts.", parse_number(0.001))
    daily_usd_limit: float | None = setting(
        10.0, "CIRCUIT_DAILY_USD_LIMIT",
        "Default daily spend limit per key in USD (UTC day); `off` for none.",
        parse_optional(parse_number()))
    default_rpm: int | None = setting(None, "CIRCUIT_DEFAULT_RPM",
                                      "Requests per minute per key, unless the key sets its "
                                      "own; off by default.", parse_optional(parse_integer(1)))
    default_tpm: int | None = setting(None, "CIRCUIT_DEFAULT_TPM",
                                      "Tokens per minute per key (prompt + max_tokens, settled "
                                      "to actual use), unless the key sets its own; off by "
                                      "default.", parse_optional(parse_integer(1)))
    breaker_window: float = setting(30.0, "CIRCUIT_BREAKER_WINDOW",
                                    "Seconds of calls the breaker's failure rate looks at.",
                                    parse_number(1.0))
    breaker_minimum_calls: int = setting(10, "CIRCUIT_BREAKER_MINIMUM_CALLS",
                                         "Calls the window must hold before the rate counts.",
                                         parse_integer(1))
    breaker_failure_rate: float = setting(0.5, "CIRCUIT_BREAKER_FAILURE_RATE",
                                          "Failure rate (0-1) over the window that opens the "
                                          "breaker.", parse_number(0.01))
    breaker_consecutive_failures: int = setting(5, "CIRCUIT_BREAKER_CONSECUTIVE_FAILURES",
                                                "Failures in a row that open the breaker.",
                                                parse_integer(1))
    breaker_cooldown: float = setting(15.0, "CIRCUIT_BREAKER_COOLDOWN",
                                      "Seconds an open breaker refuses calls before it lets "
                                      "trial calls through.", parse_number(0.01))
    breaker_half_open_calls: int = setting(2, "CIRCUIT_BREAKER_HALF_OPEN_CALLS",
                                           "Trial calls let through after the cool-down.",
                                           parse_integer(1))
    openai_api_key: str | None = setting(None, "OPENAI_API_KEY",
                                         "Key for the OpenAI provider.", parse_optional(parse_text),
                                         secret=True)
    openai_base_url: str = setting("https://api.openai.com/v1", "OPENAI_BASE_URL",
                                   "Base URL of any OpenAI-compatible upstream (vLLM, Ollama, …).")
    db_path: str = setting("data/circuit.db", "CIRCUIT_DB_PATH",
                           "SQLite database file; created with its folder on start.")
    database_url: str | None = setting(
        None, "CIRCUIT_DATABASE_URL",
        "`postgresql://user:pass@host/db` shares keys, budgets, breakers and records between "
        "replicas; `sqlite:///path` or a path: SQLite. Unset: CIRCUIT_DB_PATH.",
        parse_optional(parse_database_url), secret=True)
    redis_url: str | None = setting(
        None, "CIRCUIT_REDIS_URL",
        "`redis://host:6379/0`: rate-limit buckets and breaker state shared by every replica "
        "through Redis. Unset: each process keeps its own.", parse_optional(parse_redis_url),
        secret=True)
    redis_prefix: str = setting("circuit:", "CIRCUIT_REDIS_PREFIX",
                                "Prefix of every Redis key and channel Circuit uses, so several "
                                "deployments can share one Redis.")
    redis_fallback: str = setting(
        "open", "CIRCUIT_REDIS_FALLBACK",
        "When Redis is unreachable: `open` (each replica enforces the limits on its own) or "
        "`closed` (requests of rate-limited keys get 503 until it is back).",
        parse_choice("open", "closed"))
    redis_timeout: float = setting(1.0, "CIRCUIT_REDIS_TIMEOUT",
                                   "Seconds to wait for Redis before falling back.",
                                   parse_number(0.001))
    journal_dir: str | None = setting(
        None, "CIRCUIT_JOURNAL_DIR",
        "Folder where request records wait when the database cannot be written (replayed "
        "into it once it can). Unset: beside the SQLite file (`data/circuit.journal`), or "
        "`data/circuit.journal` with PostgreSQL.", parse_optional(parse_text))
    journal_reserve_bytes: int = setting(
        16 * 1024 * 1024, "CIRCUIT_JOURNAL_RESERVE_BYTES",
        "Disk space the journal keeps allocated, released for records when the disk is full "
        "(0: none).", parse_integer(0))
    retention_days: float | None = setting(
        90.0, "CIRCUIT_RETENTION_DAYS",
        "Days request rows are kept (fractions allowed); older ones are pruned by the gateway, "
        "their totals kept in the daily rollups. `off`: keep every row.",
        parse_optional(parse_number(0.001)))
    content_retention_days: float | None = setting(
        7.0, "CIRCUIT_CONTENT_RETENTION_DAYS",
        "Days the text of a request (a broken stream's partial answer, error messages) is kept; "
        "then it is cleared from rows kept longer. `off`: as long as the row.",
        parse_optional(parse_number(0.001)))
    prune_interval: float = setting(
        3600.0, "CIRCUIT_PRUNE_INTERVAL",
        "Seconds between the gateway's pruning rounds (the first runs soon after start).",
        parse_number(0.01))
    host: str = setting("127.0.0.1", "CIRCUIT_HOST", "Address `circuit serve` listens on.")
    port: int = setting(8080, "CIRCUIT_PORT", "Port `circuit serve` listens on (0: any free one).",
                        parse_integer(0))
    workers: int = setting(1, "CIRCUIT_WORKERS", "Worker processes for `circuit serve`.",
                           parse_integer(1))
    shutdown_grace: float = setting(
        30.0, "CIRCUIT_SHUTDOWN_GRACE",
        "Seconds `circuit serve` lets requests and streams in flight finish after SIGTERM; "
        "then a stream ends with a `gateway_shutdown` error event and a request still waiting "
        "on its upstream gets a 503. Keep it below your orchestrator's kill timeout.",
        parse_number(0.0))
    max_body_bytes: int = setting(10 * 1024 * 1024, "CIRCUIT_MAX_BODY_BYTES",
                                  "Largest request body accepted; larger gets 413.", parse_integer(1))
    header_timeout: float = setting(10.0, "CIRCUIT_HEADER_TIMEOUT",
                                    "Seconds a request's line and headers may take to arrive, "
                                    "from the connection's opening or the request's first "
                                    "byte; then 408 and close.", parse_number(0.001))
    body_timeout: float = setting(30.0, "CIRCUIT_BODY_TIMEOUT",
                                  "Seconds a request body may take to arrive after its headers, "
                                  "plus one more for every 64 KiB received; then 408 and close.",
                                  parse_number(0.001))
    keepalive_timeout: float = setting(5.0, "CIRCUIT_KEEPALIVE_TIMEOUT",
                                       "Seconds an idle keep-alive connection stays open "
                                       "before the server closes it.", parse_number(0.001))
    max_connections: int | None = setting(
        None, "CIRCUIT_MAX_CONNECTIONS",
        "Client connections per worker; at the limit the longest-idle one is closed, or a new "
        "one gets 503 when all are busy. Unset: from the open-file limit, (limit - 64) / 2, "
        "at most 10000.", parse_optional(parse_integer(1)))
    max_upstream_response_bytes: int = setting(
        32 * 1024 * 1024, "CIRCUIT_MAX_UPSTREAM_RESPONSE_BYTES",
        "Largest upstream JSON answer read; larger gets 502 upstream_response_too_large.",
        parse_integer(1024))
    max_upstream_event_bytes: int = setting(
        4 * 1024 * 1024, "CIRCUIT_MAX_UPSTREAM_EVENT_BYTES",
        "Largest single event of an upstream stream; larger ends the stream with an "
        "upstream_response_too_large error event.", parse_integer(1024))
    connect_timeout: float = setting(5.0, "CIRCUIT_CONNECT_TIMEOUT",
                                     "Seconds to connect to an upstream.", parse_number(0.001))
    first_byte_timeout: float = setting(
        120.0, "CIRCUIT_FIRST_BYTE_TIMEOUT",
        "Seconds to wait for an upstream's answer to begin (a JSON reply, or a stream's first "
        "event).", parse_number(0.001))
    idle_timeout: float = setting(60.0, "CIRCUIT_IDLE_TIMEOUT",
                                  "Seconds a stream may stay silent between events.",
                                  parse_number(0.001))
    log_level: str = setting("info", "CIRCUIT_LOG_LEVEL", "debug, info, warning or error.",
                             parse_choice("debug", "info", "warning", "error"))
    metrics_token: str | None = setting(None, "CIRCUIT_METRICS_TOKEN",
                                        "When set, GET /metrics needs `Authorization: Bearer "
                                        "<token>`.", parse_optional(parse_text), secret=True)
    log_format: str = setting("text", "CIRCUIT_LOG_FORMAT",
                              "`text` (human-readable) or `json` (one object per line).",
                              parse_choice("text", "json"))
    config_path: str | None = setting(None, "CIRCUIT_CONFIG",
                                      "TOML file to read (default: ./circuit.toml if present).",
                                      parse_optional(parse_text))
    #: `[prices."model"]` tables from circuit.toml: USD per million tokens.
    prices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: `[providers.NAME]` tables from circuit.toml (see circuit/providers/registry.py).
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: `[routes]` from circuit.toml: model name -> ["provider:model", ...] in order.
    routes: Mapping[str, list[str]] = field(default_factory=dict)
    #: Values of the variables that `[providers.*] api_key_env` names, from .env or environment.
    provider_secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: Where each setting came from: default, toml, .env, env or flag.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(name, environment variable, value with secrets masked, source) per setting."""
        rows = []
        for f in declared_settings():
            value = getattr(self, f.name)
            shown = _mask(value) if f.metadata["secret"] else _show(value)
            rows.append((f.name, f.metadata["env"], shown, self.sources.get(f.name, "default")))
        return rows


def declared_settings() -> list:
    """The dataclass fields that are user-facing settings."""
    return [f for f in fields(Settings) if "env" in f.metadata]


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _mask(value: Any) -> str:
    if not value:
        return "-"
    if isinstance(value, tuple):
        return f"({len(value)} key{'s' if len(value) != 1 else ''})"
    return "****" + str(value)[-4:] if len(str(value)) > 12 else "****"


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge every source into validated `Settings`; raise ConfigError on bad input."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    dotenv_path = cwd / ".env"
    dotenv = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} \
        if dotenv_path.is_file() else {}

    toml_path = _config_path(flags, environ, dotenv, cwd)
    toml = _read_toml(toml_path) if toml_path else {}

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in declared_settings():
        env_name = f.metadata["env"]
        for source, table, key in (("toml", toml, f.name), (".env", dotenv, env_name),
                                   ("env", environ, env_name), ("flag", flags, f.name)):
            if key in table:
                label = {"toml": f.name, "flag": "--" + f.name.replace("_", "-")}.get(source,
                                                                                     env_name)
                values[f.name] = _parse(f, table[key], label)
                sources[f.name] = source
    unknown = sorted(k for k, v in toml.items() if k not in {f.name for f in declared_settings()}
                     and k not in ("prices", "providers", "routes"))
    if unknown:
        raise ConfigError(f"{toml_path}: unknown setting {unknown[0]!r}")
    tables = {}
    for name in ("prices", "providers", "routes"):
        tables[name] = toml.get(name, {})
        if not isinstance(tables[name], dict):
            raise ConfigError(f"{toml_path}: [{name}] must be a table")
    secrets = {}
    for table in tables["providers"].values():
        variable = table.get("api_key_env") if isinstance(table, dict) else None
        if isinstance(variable, str):
            value = environ.get(variable, dotenv.get(variable))
            if value:
                secrets[variable] = value
    if toml_path:
        values["config_path"] = str(toml_path)
    settings = replace(Settings(), **values, **tables, provider_secrets=secrets,
                       sources=sources)
    settings = replace(settings, provider=provider_name(settings.provider, settings.providers))
    _check(settings)
    return settings


def _parse(f, raw: Any, label: str) -> Any:
    try:
        return f.metadata["parse"](raw)
    except ValueError as exc:
        raise ConfigError(f"{label} {exc}") from None


def _config_path(flags: Mapping[str, Any], environ: Mapping[str, str],
                 dotenv: Mapping[str, str], cwd: Path) -> Path | None:
    explicit = flags.get("config_path") or environ.get("CIRCUIT_CONFIG") or dotenv.get(
        "CIRCUIT_CONFIG")
    if explicit:
        path = Path(explicit)
        path = path if path.is_absolute() else cwd / path
        if not path.is_file():
            raise ConfigError(f"CIRCUIT_CONFIG: no such file {explicit}")
        return path
    default = cwd / "circuit.toml"
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


BUILT_IN_PROVIDERS = ("mock", "openai", "anthropic")


def provider_name(name: str, declared: Mapping[str, Any] | None = None) -> str:
    """The provider `name` means, matched without regard to case (`MOCK`, `OpenAI`), as people
    type them in .env files; a name declared in `[providers]` exactly as written wins."""
    declared = declared or {}
    if name in declared:
        return name
    matches = [known for known in {*BUILT_IN_PROVIDERS, *declared}
               if known.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else name


def _check(settings: Settings) -> None:
    known = sorted({*BUILT_IN_PROVIDERS, *settings.providers})
    if settings.provider not in known:
        raise ConfigError(f"PROVIDER must be one of {', '.join(known)}, "
                          f"got {settings.provider!r}")
    if settings.provider == "openai" and "openai" not in settings.providers \
            and not settings.openai_api_key:
        raise ConfigError("OPENAI_API_KEY is required when PROVIDER=openai")
    if settings.provider == "anthropic" and "anthropic" not in settings.providers \
            and not settings.anthropic_api_key:
        raise ConfigError("ANTHROPIC_API_KEY is required when PROVIDER=anthropic")
    if settings.breaker_failure_rate > 1:
        raise ConfigError("CIRCUIT_BREAKER_FAILURE_RATE must be between 0 and 1")
    if not settings.openai_base_url.startswith(("http://", "https://")):
        raise ConfigError("OPENAI_BASE_URL must start with http:// or https://")
