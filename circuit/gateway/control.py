"""ControlLoop: what a gateway process shares with the database, twice a second, off the
request path.

Each tick it reloads the key ring when the keys table changed (keys added, limited or revoked
from the CLI), saves breaker state changes and a snapshot of each breaker, applies operator
commands (`circuit breaker reset|open`), and gives back idle budget leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable

from circuit.accounting.budget import BudgetLedger
from circuit.gateway.auth import KeyRing
from circuit.resilience.breaker import OPEN, CircuitBreaker, StateChange
from circuit.store.protection_rows import BreakerEventRow, BreakerStateRow
from circuit.store.timestamps import utc_now, utc_text

log = logging.getLogger("circuit.control")

TICK_SECONDS = 0.5
#: A breaker's snapshot is saved at least this often, as a heartbeat for `breaker status`.
SNAPSHOT_SECONDS = 2.0


def last_failure_text(breaker: CircuitBreaker) -> str | None:
    """The breaker's last failure as operators read it: `code at time`."""
    if breaker.last_failure is None:
        return None
    code, at = breaker.last_failure
    return f"{code} at {utc_text(at)}"


def process_holder() -> str:
    """This process, as named in breaker rows: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ControlLoop:
    def __init__(self, store, keys: KeyRing, config_keys: tuple[str, ...],
                 breakers: dict[str, CircuitBreaker], ledger: BudgetLedger,
                 on_keys_loaded: Callable[[], None] | None = None) -> None:
        self._store = store
        self._keys = keys
        self._config_keys = config_keys
        self._breakers = breakers
        self._ledger = ledger
        self._on_keys_loaded = on_keys_loaded
        self.holder = process_holder()
        self._keys_fingerprint: str | None = None
        self._events: list[BreakerEventRow] = []
        self._snapshots: dict[str, tuple] = {}
        self._snapshot_at = 0.0
        self._last_command = 0
        self._task: asyncio.Task | None = None
        #: Ticks completed: a change made before tick N started is in effect once N is done.
        self.ticks = 0
        for breaker in breakers.values():
            breaker.listeners.append(self._on_state_change)

    def _on_state_change(self, change: StateChange) -> None:
        log.warning("breaker %s: %s -> %s (%s)", change.provider, change.from_state,
                    change.to_state, change.reason)
        self._events.append(BreakerEventRow(change.provider, self.holder, change.from_state,
                                            change.to_state, change.reason,
                                            utc_text(change.at)))

    async def start(self) -> None:
        await self.refresh_keys()
        self._last_command = await asyncio.to_thread(self._store.last_breaker_command_id)
        await self.save_breakers(force=True)
        self._task = asyncio.create_task(self._run(), name="circuit-control")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._ledger.return_all()
        await self.save_breakers(force=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for step in (self.refresh_keys, self.apply_commands, self.save_breakers,
                         self._ledger.return_idle):
                try:
                    await step()
                except Exception:
                    log.exception("control step %s failed; will retry", step.__name__)
            self.ticks += 1

    async def refresh_keys(self) -> None:
        """Reload the key ring if the keys table changed since the last look."""
        fingerprint = await asyncio.to_thread(self._store.keys_fingerprint)
        if fingerprint == self._keys_fingerprint:
            return
        rows = await asyncio.to_thread(self._store.load_keys)
        self._keys.load(self._config_keys, rows)
        self._keys_fingerprint = fingerprint
        if self._on_keys_loaded is not None:
            self._on_keys_loaded()

    async def apply_commands(self) -> None:
        commands = await asyncio.to_thread(self._store.breaker_commands_after,
                                           self._last_command)
        for command in commands:
            self._last_command = command.id
            breaker = self._breakers.get(command.provider)
            if breaker is None:
                continue
            if command.action == "open":
                breaker.force_open("opened by operator")
            elif command.action == "reset":
                breaker.reset("reset by operator")

    async def save_breakers(self, force: bool = False) -> None:
        now = time.monotonic()
        states = []
        for name, breaker in self._breakers.items():
            calls, failures = breaker.failures_in_window()
            to_probe = breaker.seconds_to_probe()
            snapshot = (breaker.state, breaker.opened_at, calls, failures, breaker.last_failure)
            if snapshot == self._snapshots.get(name) and not force and \
                    now - self._snapshot_at < SNAPSHOT_SECONDS:
                continue
            self._snapshots[name] = snapshot
            states.append(BreakerStateRow(
                name, self.holder, breaker.state,
                utc_text(breaker.opened_at) if breaker.opened_at else None,
                utc_text(time.time() + to_probe) if breaker.state == OPEN and to_probe is not None
                else None, calls, failures, utc_now(), last_failure_text(breaker)))
        if states and len(states) == len(self._breakers):
            self._snapshot_at = now
        events, self._events = self._events, []
        if events or states:
            try:
                await asyncio.to_thread(self._store.save_breakers, events, states)
            except Exception:
                self._events = events + self._events  # keep them for the next tick
                raise
