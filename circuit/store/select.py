"""open_store: the one place that turns settings into a store, for the gateway and the CLI.

`database_url` (CIRCUIT_DATABASE_URL) decides when set: `postgresql://…` (or `postgres://…`)
is PostgreSQL; `sqlite:///relative/path`, `sqlite:////absolute/path` or a bare path is SQLite.
Unset: the SQLite file at `db_path` (CIRCUIT_DB_PATH).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from circuit.config import Settings
from circuit.store.base import Store

Kind = Literal["sqlite", "postgres"]


def store_location(settings: Settings) -> tuple[Kind, str]:
    """Which implementation, and its URL (PostgreSQL) or file path (SQLite)."""
    url = settings.database_url
    if not url:
        return "sqlite", settings.db_path
    if url.lower().startswith(("postgresql://", "postgres://")):
        return "postgres", url
    if url.lower().startswith("sqlite://"):
        return "sqlite", url[len("sqlite:///"):]
    return "sqlite", url


def journal_directory(settings: Settings) -> Path:
    """Where records wait when the database cannot take them: CIRCUIT_JOURNAL_DIR, else
    beside the SQLite file (circuit.db -> circuit.journal), else data/circuit.journal."""
    if settings.journal_dir:
        return Path(settings.journal_dir)
    kind, where = store_location(settings)
    if kind == "sqlite":
        return Path(where).with_suffix(".journal")
    return Path("data") / "circuit.journal"


def describe_store(settings: Settings) -> str:
    """Where the data lives, fit to print: a file path, or the URL without its password."""
    kind, where = store_location(settings)
    if kind == "sqlite":
        return where
    from circuit.store.postgres import safe_url

    return safe_url(where)


def open_store(settings: Settings) -> Store:
    """The store the settings name (nothing is connected or created until first use)."""
    kind, where = store_location(settings)
    if kind == "postgres":
        from circuit.store.postgres import PostgresStore  # psycopg loads only when used

        return PostgresStore(where)
    from circuit.store.sqlite import SQLiteStore

    return SQLiteStore(where)
