"""How many client connections one worker holds, and for how long each may wait.

Every connection costs a file descriptor, and every proxied request a second one upstream, so a
worker holds at most `max_connections` client connections (by default half of what the
open-file limit leaves after a reserve). At the limit a new connection takes the place of the
one that has waited longest without a request in flight (idle keep-alive, or still sending its
head), the way nginx reuses keep-alive connections; only when every connection has a request in
flight is the new one refused, fast, with a 503. Waiting itself is bounded by the timeouts, so
idle and slow clients cannot hold the slots for long either.

The policy comes from the app's settings through its lifespan state (`LIFESPAN_KEY`), which
uvicorn hands to every protocol instance it makes, in every worker process.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any, Protocol

from circuit.config import Settings

LIFESPAN_KEY = "circuit.connections"
#: Descriptors kept back from the open-file limit: listener, database, logs, epoll, pipes.
RESERVED_FILES = 64
#: The derived default never exceeds this many connections per worker.
MAX_DERIVED_CONNECTIONS = 10_000


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # not allowed here: work within the soft limit
    return soft if soft != resource.RLIM_INFINITY else MAX_DERIVED_CONNECTIONS * 2


def derived_max_connections(open_files: int) -> int:
    """Client connections that fit `open_files` descriptors, each with an upstream one."""
    return max(1, min(MAX_DERIVED_CONNECTIONS, (open_files - RESERVED_FILES) // 2))


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """Seconds a connection may wait at each stage, and how many a worker holds."""

    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionPolicy:
        """The policy the settings ask for; raises the open-file limit as far as allowed."""
        open_files = raise_open_file_limit()
        return cls(settings.header_timeout, settings.body_timeout, settings.keepalive_timeout,
                   settings.max_connections or derived_max_connections(open_files))


class Evictable(Protocol):
    def evict(self) -> None:
        """Close the connection: its slot is needed."""


class ConnectionGuard:
    """One worker's policy, and its connections without a request in flight, longest-waiting
    first (a dict keeps insertion order: marking one waiting again moves it to the end)."""

    __slots__ = ("policy", "_waiting")

    def __init__(self, policy: ConnectionPolicy) -> None:
        self.policy = policy
        self._waiting: dict[Evictable, None] = {}

    def waiting(self, connection: Evictable) -> None:
        self._waiting.pop(connection, None)
        self._waiting[connection] = None

    def busy(self, connection: Evictable) -> None:
        self._waiting.pop(connection, None)

    def make_room(self) -> bool:
        """Evict the longest-waiting connection; False when every connection is busy."""
        for connection in self._waiting:
            del self._waiting[connection]
            connection.evict()
            return True
        return False

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)


def lifespan_state(settings: Settings) -> dict[str, Any]:
    """What the app's lifespan yields for the HTTP protocol of its server."""
    return {LIFESPAN_KEY: ConnectionGuard(ConnectionPolicy.from_settings(settings))}


def guard_for(app_state: dict[str, Any]) -> ConnectionGuard:
    """The server's guard; the defaults when the app gave none (lifespan off, another app)."""
    guard = app_state.get(LIFESPAN_KEY)
    if guard is None:
        guard = app_state.setdefault(LIFESPAN_KEY,
                                     ConnectionGuard(ConnectionPolicy.from_settings(Settings())))
    return guard
