"""The first key: made once, on a fresh database, so a new gateway is usable but never open."""

from __future__ import annotations

from circuit.config import Settings
from circuit.gateway.runtime import open_store
from circuit.keys import create_key, free_name


def ensure_first_key(settings: Settings) -> tuple[str, str] | None:
    """Migrate the database, and create a key when no active key exists anywhere; return its
    (name, secret), else None.

    A random key shown once, rather than a well-known default that could linger in production.
    It is named `default`, or `default-2`, … when a revoked `default` keeps that name.
    """
    store = open_store(settings)
    try:
        store.migrate()  # also shows, before anything starts, that the database opens
        if settings.api_keys:
            return None
        rows = store.load_keys()
        if any(row.revoked_at is None for row in rows):
            return None
        name = free_name("default", (row.name for row in rows))
        return name, create_key(store, name)
    finally:
        store.close()
