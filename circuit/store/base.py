"""The storage interface the gateway and the CLI share; SQLite and PostgreSQL implement it.

It declares every method either calls — request records, keys, budget leases, breaker state,
the journal's replay, the reports — and every failure is a typed StoreError
(circuit/store/errors.py).

Methods are synchronous and may block: the gateway calls them only from its writer thread or
through `asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

from circuit.store.protection_rows import BreakerCommand, BreakerEventRow, BreakerStateRow
from circuit.store.records import KeyRow, RequestRecord
from circuit.store.reports import UsageReport


class KeyNotFound(LookupError):
    """No key of that name."""


class KeyExists(ValueError):
    """A key of that name exists already."""


class Store(Protocol):
    def migrate(self) -> None:
        """Create the database if needed and apply pending migrations."""

    def insert_requests(self, records: Sequence[RequestRecord], *, again: bool = False) -> None:
        """Insert a batch of request records in one transaction. `again`: the batch may be
        in already (an earlier attempt failed without saying whether it committed); records
        whose key exists are skipped."""

    def insert_replayed(self, records: Sequence[RequestRecord], file: str, offset: int) -> None:
        """Insert journaled records and note `file` replayed up to `offset`, in one
        transaction (see circuit/store/journal.py)."""

    def journal_offset(self, file: str) -> int:
        """How far `file` of the journal has been replayed (0: not at all)."""

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

    # -- protection: budget leases and breakers, shared by every gateway process -------------

    def lease_budget(self, key_name: str, day: str, want: int, need: int,
                     limit: int) -> tuple[int, int]:
        """Atomically grant between `need` and `want` micro-dollars of a key's day without
        passing `limit`; (granted, total granted for the key and day), granted 0 if refused."""

    def return_budget(self, key_name: str, day: str, amount: int) -> None:
        """Give back an unused lease."""

    def granted_budget(self, key_name: str, day: str) -> int:
        """Micro-dollars leased for the key and day, all processes together."""

    def save_breakers(self, events: Sequence[BreakerEventRow],
                      states: Sequence[BreakerStateRow]) -> None:
        """Append breaker state changes and replace this process's states, in one
        transaction."""

    def breaker_states(self) -> list[BreakerStateRow]:
        """Every process's current breaker state."""

    def breaker_events(self, provider: str | None = None,
                       limit: int = 50) -> list[BreakerEventRow]:
        """State changes, newest first."""

    def add_breaker_command(self, provider: str, action: str) -> int:
        """An operator's `open` or `reset`, for every gateway process; its id."""

    def breaker_commands_after(self, after_id: int) -> list[BreakerCommand]:
        """Commands with an id above `after_id`, in order."""

    def last_breaker_command_id(self) -> int:
        """The newest command's id, 0 when there is none."""

    # -- read side for the CLI (circuit/store/reports.py); none of these create or write -----

    def exists(self) -> bool:
        """Whether the database is there at all."""

    def find_requests(self, request_id: str) -> list[dict]:
        """Every record with this request id, oldest first."""

    def usage(self, *, since: str, until: str | None = None, by: str = "key",
              key: str | None = None, today: date | None = None) -> UsageReport:
        """Requests, failures, tokens, cost and latency percentiles per group in a window
        (whole days from the rollups; `today`, the UTC day read from rows, defaults to now)."""

    def spend_by_key(self, since: str) -> dict[str | None, int]:
        """Micro-dollars spent per key name since `since` (timestamp text)."""

    def has_requests_from(self, key: str) -> bool:
        """Whether any request record names this key."""

    def last_request_id(self) -> int:
        """The newest record's id, 0 when there is none."""

    def latest_requests(self, limit: int = 10, *, up_to_id: int | None = None,
                        key: str | None = None, status: str | None = None) -> list[dict]:
        """The newest matching records, oldest first."""

    def requests_between(self, after_id: int, up_to_id: int, *, key: str | None = None,
                         status: str | None = None) -> list[dict]:
        """Matching records with after_id < id <= up_to_id, oldest first."""

    def request_page(self, since: str | None, until: str | None,
                     after: tuple[str, int] | None, limit: int) -> list[tuple]:
        """Up to `limit` rows of [since, until) after (timestamp, id) `after`, oldest first,
        as tuples in RECORD_FIELDS order (circuit/store/export.py pages through them)."""

    # -- retention (circuit/store/pruning.py, circuit/store/retention.py) ---------------------

    def prune_requests(self, before: str, limit: int) -> int:
        """Delete up to `limit` of the oldest rows from before `before`; how many."""

    def clear_content(self, before: str, limit: int) -> int:
        """Clear the text of up to `limit` of the oldest rows from before `before`."""

    def count_prunable(self, before: str | None, content_before: str | None) -> tuple[int, int]:
        """(rows that pruning would delete, rows whose text it would clear)."""

    def release_space(self) -> int:
        """Give space freed by pruning back to the file system; bytes released."""

    def compact(self) -> int:
        """Rewrite the database to its smallest size; bytes released."""

    def close(self) -> None:
        """Release connections held by the calling thread."""
