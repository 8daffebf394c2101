"""Settings: defaults < circuit.toml < .env < environment < CLI flags.

Each setting is declared once, as a field of `Settings` with its environment variable, parser and
help text in the field's metadata; the loader, `circuit config show` and the README table all read
that one declaration.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values


class ConfigError(Exception):
    """Invalid configuration; the message is one line that names the setting."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {value!r}")
    return value.strip()


def _number(minimum: float = 0.0) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got {value!r}") from None
        if not math.isfinite(number) or number < minimum:
            raise ValueError(f"must be a number >= {minimum:g}, got {value!r}")
        return number

    return parse


def _integer(minimum: int = 0) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"must be a whole number, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a whole number, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be a whole number >= {minimum}, got {value!r}")
        return number

    return parse


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
            return None
        return parse(value)

    return parse_optional


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).lower()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return text

    return parse


def _key_list(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a comma-separated list of keys")
    keys = tuple(str(item).strip() for item in items if str(item).strip())
    for key in keys:
        if len(key) < 8:
            raise ValueError("each key must be at least 8 characters long")
    return keys


def _database_url(value: Any) -> str:
    text = _text(value)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in ("", "postgresql", "postgres", "sqlite"):
        raise ValueError(f"must be a postgresql:// URL, a sqlite:/// URL or a file path, "
                         f"got a {scheme}:// URL")
    if scheme == "sqlite" and not text[len("sqlite://"):].startswith("/"):
        raise ValueError("must name a file: sqlite:///relative/path or sqlite:////absolute/path")
    return text


def _redis_url(value: Any) -> str:
    text = _text(value)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return text


def setting(default: Any, env: str, help: str, parse: Callable[[Any], Any] = _text,
            secret: bool = False) -> Any:
    """Declare a setting: its default, environment variable, parser and help."""
    return field(default=default,
                 metadata={"env": env, "help": help, "parse": parse, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one gateway process."""

    provider: str = setting("mock", "PROVIDER",
                            "Provider for models without a route: `mock`, `openai`, `anthropic` "
                            "or a name from `[providers]`.", _text)
    api_keys: tuple[str, ...] = setting(
        (), "CIRCUIT_API_KEYS",
        "Comma-separated client keys accepted besides those in the keys table "
        "(named `config-1`, `config-2`, …).", _key_list, secret=True)
    anthropic_api_key: str | None = setting(None, "ANTHROPIC_API_KEY",
                                            "Key for the Anthropic provider (enables it).",
                                            _optional(_text), secret=True)
    anthropic_base_url: str = setting("https://api.anthropic.com", "ANTHROPIC_BASE_URL",
                                      "Base URL of the Anthropic Messages API.")
    anthropic_max_tokens: int = setting(4096, "ANTHROPIC_DEFAULT_MAX_TOKENS",
                                        "`max_tokens` sent to Anthropic when the client gives "
                                        "none (Anthropic requires one).", _integer(1))
    retry_max_attempts: int = setting(3, "CIRCUIT_RETRY_MAX_ATTEMPTS",
                                      "Calls per target for a retryable failure, the first "
                                      "included (1: no retries).", _integer(1))
    retry_backoff_initial: float = setting(0.25, "CIRCUIT_RETRY_BACKOFF_INITIAL",
                                           "Seconds: the cap of the first retry's random "
                                           "delay; it doubles each retry.", _number(0.0))
    retry_backoff_max: float = setting(8.0, "CIRCUIT_RETRY_BACKOFF_MAX",
                                       "Seconds: no retry delay is longer.", _number(0.0))
    request_deadline: float = setting(60.0, "CIRCUIT_REQUEST_DEADLINE",
                                      "Seconds from a request's arrival after which no new "
                                      "attempt or fallback starts.", _number(0.001))
    daily_usd_limit: float | None = setting(
        10.0, "CIRCUIT_DAILY_USD_LIMIT",
        "Default daily spend limit per key in USD (UTC day); `off` for none.",
        _optional(_number()))
    default_rpm: int | None = setting(None, "CIRCUIT_DEFAULT_RPM",
                                      "Requests per minute per key, unless the key sets its "
                                      "own; off by default.", _optional(_integer(1)))
    default_tpm: int | None = setting(None, "CIRCUIT_DEFAULT_TPM",
                                      "Tokens per minute per key (prompt + max_tokens, settled "
                                      "to actual use), unless the key sets its own; off by "
                                      "default.", _optional(_integer(1)))
    breaker_window: float = setting(30.0, "CIRCUIT_BREAKER_WINDOW",
                                    "Seconds of calls the breaker's failure rate looks at.",
                                    _number(1.0))
    breaker_minimum_calls: int = setting(10, "CIRCUIT_BREAKER_MINIMUM_CALLS",
                                         "Calls the window must hold before the rate counts.",
                                         _integer(1))
    breaker_failure_rate: float = setting(0.5, "CIRCUIT_BREAKER_FAILURE_RATE",
                                          "Failure rate (0-1) over the window that opens the "
                                          "breaker.", _number(0.01))
    breaker_consecutive_failures: int = setting(5, "CIRCUIT_BREAKER_CONSECUTIVE_FAILURES",
                                                "Failures in a row that open the breaker.",
                                                _integer(1))
    breaker_cooldown: float = setting(15.0, "CIRCUIT_BREAKER_COOLDOWN",
                                      "Seconds an open breaker refuses calls before it lets "
                                      "trial calls through.", _number(0.01))
    breaker_half_open_calls: int = setting(2, "CIRCUIT_BREAKER_HALF_OPEN_CALLS",
                                           "Trial calls let through after the cool-down.",
                                           _integer(1))
    openai_api_key: str | None = setting(None, "OPENAI_API_KEY",
                                         "Key for the OpenAI provider.", _optional(_text),
                                         secret=True)
    openai_base_url: str = setting("https://api.openai.com/v1", "OPENAI_BASE_URL",
                                   "Base URL of any OpenAI-compatible upstream (vLLM, Ollama, …).")
    db_path: str = setting("data/circuit.db", "CIRCUIT_DB_PATH",
                           "SQLite database file; created with its folder on start.")
    database_url: str | None = setting(
        None, "CIRCUIT_DATABASE_URL",
        "`postgresql://user:pass@host/db` shares keys, budgets, breakers and records between "
        "replicas; `sqlite:///path` or a path: SQLite. Unset: CIRCUIT_DB_PATH.",
        _optional(_database_url), secret=True)
    redis_url: str | None = setting(
        None, "CIRCUIT_REDIS_URL",
        "`redis://host:6379/0`: rate-limit buckets and breaker state shared by every replica "
        "through Redis. Unset: each process keeps its own.", _optional(_redis_url), secret=True)
    redis_prefix: str = setting("circuit:", "CIRCUIT_REDIS_PREFIX",
                                "Prefix of every Redis key and channel Circuit uses, so several "
                                "deployments can share one Redis.")
    redis_fallback: str = setting(
        "open", "CIRCUIT_REDIS_FALLBACK",
        "When Redis is unreachable: `open` (each replica enforces the limits on its own) or "
        "`closed` (requests of rate-limited keys get 503 until it is back).",
        _choice("open", "closed"))
    redis_timeout: float = setting(1.0, "CIRCUIT_REDIS_TIMEOUT",
                                   "Seconds to wait for Redis before falling back.",
                                   _number(0.001))
    journal_dir: str | None = setting(
        None, "CIRCUIT_JOURNAL_DIR",
        "Folder where request records wait when the database cannot be written (replayed "
        "into it once it can). Unset: beside the SQLite file (`data/circuit.journal`), or "
        "`data/circuit.journal` with PostgreSQL.", _optional(_text))
    journal_reserve_bytes: int = setting(
        16 * 1024 * 1024, "CIRCUIT_JOURNAL_RESERVE_BYTES",
        "Disk space the journal keeps allocated, released for records when the disk is full "
        "(0: none).", _integer(0))
    host: str = setting("127.0.0.1", "CIRCUIT_HOST", "Address `circuit serve` listens on.")
    port: int = setting(8080, "CIRCUIT_PORT", "Port `circuit serve` listens on (0: any free one).",
                        _integer(0))
    workers: int = setting(1, "CIRCUIT_WORKERS", "Worker processes for `circuit serve`.",
                           _integer(1))
    max_body_bytes: int = setting(10 * 1024 * 1024, "CIRCUIT_MAX_BODY_BYTES",
                                  "Largest request body accepted; larger gets 413.", _integer(1))
    connect_timeout: float = setting(5.0, "CIRCUIT_CONNECT_TIMEOUT",
                                     "Seconds to connect to an upstream.", _number(0.001))
    first_byte_timeout: float = setting(
        120.0, "CIRCUIT_FIRST_BYTE_TIMEOUT",
        "Seconds to wait for an upstream's answer to begin (a JSON reply, or a stream's first "
        "event).", _number(0.001))
    idle_timeout: float = setting(60.0, "CIRCUIT_IDLE_TIMEOUT",
                                  "Seconds a stream may stay silent between events.",
                                  _number(0.001))
    log_level: str = setting("info", "CIRCUIT_LOG_LEVEL", "debug, info, warning or error.",
                             _choice("debug", "info", "warning", "error"))
    metrics_token: str | None = setting(None, "CIRCUIT_METRICS_TOKEN",
                                        "When set, GET /metrics needs `Authorization: Bearer "
                                        "<token>`.", _optional(_text), secret=True)
    log_format: str = setting("text", "CIRCUIT_LOG_FORMAT",
                              "`text` (human-readable) or `json` (one object per line).",
                              _choice("text", "json"))
    config_path: str | None = setting(None, "CIRCUIT_CONFIG",
                                      "TOML file to read (default: ./circuit.toml if present).",
                                      _optional(_text))
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
        return f"({len(value)} keys)"
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
