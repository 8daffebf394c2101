"""A fresh PostgreSQL schema per test, dropped afterwards.

The server is CIRCUIT_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).
Where it is unreachable the PostgreSQL tests skip, saying why, unless CI is set: then they
fail, so a CI run can never pass by quietly testing SQLite alone.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

SERVER_URL = os.environ.get("CIRCUIT_TEST_POSTGRES_URL",
                            "postgresql://postgres@127.0.0.1:5432/test")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@cache
def _unreachable_reason() -> str | None:
    try:
        psycopg.connect(SERVER_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def require_postgres() -> None:
    """Skip (fail, under CI) when no PostgreSQL server answers."""
    reason = _unreachable_reason()
    if reason is None:
        return
    server = conninfo_to_dict(SERVER_URL)
    where = f"{server.get('host', 'localhost')}:{server.get('port', 5432)}"
    if in_ci():
        pytest.fail(f"PostgreSQL not reachable at {where} and CI is set: {reason}",
                    pytrace=False)
    pytest.skip(f"PostgreSQL not reachable at {where} (set CI=true to require it)")


def schema_url(schema: str) -> str:
    """The server URL with `schema` as the search_path of every connection made from it."""
    separator = "&" if "?" in SERVER_URL else "?"
    return f"{SERVER_URL}{separator}options={quote(f'-c search_path={schema}')}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """Create `circuit_test_<random>`, yield a URL whose connections use it, drop it after."""
    require_postgres()
    schema = f"circuit_test_{secrets.token_hex(6)}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
