"""The first key: made once, on a fresh database, so a new gateway is usable but never open."""

from __future__ import annotations

from circuit.config import Settings
from circuit.gateway.runtime import open_store
from circuit.keys import create_key, has_active_keys


def ensure_first_key(settings: Settings) -> str | None:
    """Create a key named `default` when no key exists anywhere; return its secret, else None.

    A random key shown once, rather than a well-known default that could linger in production.
    """
    if settings.api_keys:
        return None
    store = open_store(settings)
    try:
        store.migrate()
        if has_active_keys(store):
            return None
        return create_key(store, "default")
    finally:
        store.close()
