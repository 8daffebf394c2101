"""Parsers of configuration values: each turns what a file, `.env`, the environment or a flag
gave into a checked value, or raises ValueError saying what is wrong. Settings are declared
with them (circuit/config.py), and so are the fields of `[providers]` tables
(circuit/providers/registry.py): one set of rules for every value of a configuration."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def parse_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {value!r}")
    return value.strip()


def parse_number(minimum: float = 0.0) -> Callable[[Any], float]:
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


def parse_integer(minimum: int = 0) -> Callable[[Any], int]:
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


def parse_optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
            return None
        return parse(value)

    return parse_optional


def parse_choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = parse_text(value).lower()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return text

    return parse


def parse_key_list(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a comma-separated list of keys")
    keys = tuple(str(item).strip() for item in items if str(item).strip())
    for key in keys:
        if len(key) < 8:
            raise ValueError("each key must be at least 8 characters long")
    return keys


def parse_database_url(value: Any) -> str:
    text = parse_text(value)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in ("", "postgresql", "postgres", "sqlite"):
        raise ValueError(f"must be a postgresql:// URL, a sqlite:/// URL or a file path, "
                         f"got a {scheme}:// URL")
    if scheme == "sqlite" and not text[len("sqlite://"):].startswith("/"):
        raise ValueError("must name a file: sqlite:///relative/path or sqlite:////absolute/path")
    return text


def parse_redis_url(value: Any) -> str:
    text = parse_text(value)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return text


def parse_flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = parse_text(value).lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def parse_http_url(value: Any) -> str:
    text = parse_text(value)
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {value!r}")
    return text
