"""The storage interface the gateway and the CLI share; SQLite and PostgreSQL implement it.

Methods are synchronous and may block: the gateway calls them only from its writer thread or
through `asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from circuit.store.records import KeyRow, RequestRecord


class KeyNotFound(LookupError):
    """No key of that name."""


class KeyExists(ValueError):
    """A key of that name exists already."""


class Store(Protocol):
    def migrate(self) -> None:
        """Create the database if needed and apply pending migrations."""

    def insert_requests(self, records: Sequence[RequestRecord]) -> None:
        """Insert a batch of request records in one transaction."""

    def load_keys(self) -> list[KeyRow]:
        """Every key, revoked ones included."""

    def keys_fingerprint(self) -> str:
        """A cheap value that changes whenever the keys table changes."""

    def add_key(self, row: KeyRow) -> None:
        """Store a new key; raise KeyExists if the name is taken."""

    def update_key(self, name: str, **changes: object) -> KeyRow:
        """Change a key's limits or revocation; raise KeyNotFound."""

    def recent_requests(self, limit: int = 10) -> list[dict]:
        """The newest request records, newest first."""

    def close(self) -> None:
        """Release connections held by the calling thread."""
