"""How a command gets its settings and its store; the global `--db` reaches them through here.

Read commands use `reading(ctx)`: it never creates a database (a missing one is exit 2 with a
hint). Commands that write keys use `writing(ctx)`, which creates and migrates the database if
needed. Both keep SQLite's autocommit connections, so every statement is its own short
transaction and a running gateway is never locked out. Store errors become one-line failures.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from circuit.cli.output import fail, note
from circuit.config import ConfigError, Settings, load_settings
from circuit.store.base import Store
from circuit.store.errors import NotCircuitDatabase, SchemaOutdated, StoreError
from circuit.store.select import describe_store, store_location

DB_KEY = "circuit.db_path"
CONFIG_KEY = "circuit.config_path"


def settings(ctx: typer.Context | None = None, **flags: object) -> Settings:
    """The effective settings, with the global `--db` (and any command flags) on top."""
    merged = {}
    if ctx is not None:
        merged["db_path"] = ctx.meta.get(DB_KEY)
        merged["config_path"] = ctx.meta.get(CONFIG_KEY)
    merged.update(flags)
    try:
        return load_settings(merged)
    except ConfigError as exc:
        raise fail(f"configuration: {exc}") from None


def _open(settings: Settings) -> Store:
    # The gateway's own choice of store, so both always open the same one.
    from circuit.store.select import open_store

    return open_store(settings)


def _shown(config: Settings) -> str:
    """Where the store is, and for a relative SQLite path the folder it is relative to."""
    kind, where = store_location(config)
    if kind == "sqlite" and not Path(where).is_absolute():
        return f"{where} (in {Path.cwd()})"
    return describe_store(config)


def missing_database(config: Settings) -> typer.Exit:
    """The one-line failure for a read command that found no database: where it looked, and how
    to name the gateway's, never advice that would make a second, unrelated one."""
    if store_location(config)[0] == "postgres":
        return fail(f"no Circuit tables in {describe_store(config)}; a gateway started with "
                    "this CIRCUIT_DATABASE_URL creates them")
    return fail(f"no database at {_shown(config)}; name the gateway's with --db PATH or "
                "CIRCUIT_DB_PATH (the gateway creates its database when it starts)")


@contextmanager
def store_errors(path: str) -> Iterator[None]:
    """Turn a store failure into one line naming the database."""
    try:
        yield
    except NotCircuitDatabase as exc:
        raise fail(f"{path} is not a Circuit database ({exc})") from None
    except SchemaOutdated as exc:
        raise fail(f"{path} has an older schema ({exc}); start the gateway once to "
                   "migrate it") from None
    except StoreError as exc:
        raise fail(f"database {path}: {str(exc).strip().splitlines()[0]}") from None


@contextmanager
def reading(ctx: typer.Context) -> Iterator[Store]:
    """The store of an existing database, for commands that must not create one."""
    config = settings(ctx)
    where = describe_store(config)
    store = _open(config)
    try:
        with store_errors(where):
            if not store.exists():
                raise missing_database(config)
            yield store
    finally:
        store.close()


@contextmanager
def writing(ctx: typer.Context) -> Iterator[Store]:
    """The store, created and migrated if needed (`keys add`); a database created here is
    announced on stderr, so a mistyped path never makes a second database unnoticed."""
    config = settings(ctx)
    where = describe_store(config)
    store = _open(config)
    try:
        with store_errors(where):
            created = store_location(config)[0] == "sqlite" and not store.exists()
            try:
                store.migrate()
            except OSError as exc:
                raise fail(f"cannot create the database at {where}: "
                           f"{exc.strerror or exc}") from None
            if created:
                path = Path(store_location(config)[1]).resolve()
                note(f"Created a new database at {_shown(config)}; start a gateway on it with "
                     f"`circuit --db {shlex.quote(str(path))} serve`.")
            yield store
    finally:
        store.close()
