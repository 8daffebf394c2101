"""BudgetLedger: daily USD limits per key that no amount of concurrency can overspend.

Each process leases budget from the database in chunks, with one atomic conditional statement
that never lets the leases granted for a key and UTC day pass its limit; requests then reserve
their worst-case cost from the local lease in memory, and settle to the actual cost after the
call, returning the rest. Spend across every process and replica is thus bounded by the limit,
and the database is touched once per chunk, not once per request. Unused leases go back after a
few idle seconds, on a limit change and on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from circuit.errors import QuotaExceeded
from circuit.store.timestamps import utc_now

log = logging.getLogger("circuit.budget")

#: Share of a key's daily limit leased at a time (a larger request leases what it needs).
LEASE_SHARE = 20
#: A lease untouched this long goes back, so other processes may use it.
IDLE_RETURN_SECONDS = 2.0


class LeaseStore(Protocol):
    def lease_budget(self, key_name: str, day: str, want: int, need: int,
                     limit: int) -> tuple[int, int]:
        """Atomically grant between `need` and `want` micro-dollars without passing `limit`;
        return (granted, total granted for the key and day); granted is 0 when refused."""

    def return_budget(self, key_name: str, day: str, amount: int) -> None: ...


def utc_day() -> str:
    """Today (UTC) as YYYY-MM-DD: the first ten characters of the timestamp text."""
    return utc_now()[:10]


@dataclass(slots=True)
class Reservation:
    key_name: str
    day: str
    amount: int  # micro-dollars held for this request


@dataclass
class _Lease:
    limit: int
    available: int = 0
    last_used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class BudgetLedger:
    """Reserve before a call, settle after it."""

    def __init__(self, store: LeaseStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._leases: dict[tuple[str, str], _Lease] = {}

    async def reserve(self, key_name: str, limit_micros: int | None,
                      worst_micros: int | None) -> Reservation | None:
        """Hold `worst_micros` of the key's budget for today, or raise QuotaExceeded.
        None: nothing to hold (no limit, or a model with no price)."""
        if limit_micros is None or worst_micros is None:
            return None
        day = utc_day()
        lease = self._leases.get((key_name, day))
        if lease is None:
            lease = self._leases[(key_name, day)] = _Lease(limit_micros)
        lease.last_used = self._clock()
        if lease.limit == limit_micros and lease.available >= worst_micros:
            lease.available -= worst_micros  # the fast path: memory only
            return Reservation(key_name, day, worst_micros)
        async with lease.lock:
            if lease.limit != limit_micros:
                await self._give_back(key_name, day, lease)
                lease.limit = limit_micros
            while lease.available < worst_micros:
                need = worst_micros - lease.available
                want = max(need, limit_micros // LEASE_SHARE)
                granted, total = await asyncio.to_thread(
                    self._store.lease_budget, key_name, day, want, need, limit_micros)
                if not granted:
                    raise _quota_exceeded(limit_micros, worst_micros,
                                          limit_micros - total + max(0, lease.available))
                lease.available += granted
            lease.available -= worst_micros
            return Reservation(key_name, day, worst_micros)

    def settle(self, reservation: Reservation | None, actual_micros: int | None) -> None:
        """Keep the actual cost of a reserved call and release the rest of its reservation."""
        if reservation is None:
            return
        lease = self._leases.get((reservation.key_name, reservation.day))
        if lease is None:
            return
        actual = reservation.amount if actual_micros is None else actual_micros
        lease.available += reservation.amount - actual
        if lease.available < 0:
            # Spent past the reservation (an upstream counted more than we could foresee):
            # record the debt so the ledger stays true; later requests will be refused.
            debt, lease.available = -lease.available, 0
            asyncio.get_running_loop().create_task(self._cover(reservation, debt))

    async def _cover(self, reservation: Reservation, debt: int) -> None:
        await asyncio.to_thread(self._store.lease_budget, reservation.key_name,
                                reservation.day, debt, debt, 2**62)

    async def return_idle(self) -> None:
        """Give back leases idle for a while, and drop those of past days."""
        now, today = self._clock(), utc_day()
        for (key_name, day), lease in list(self._leases.items()):
            if day != today:
                del self._leases[(key_name, day)]
            elif (lease.available > 0 and not lease.lock.locked()
                  and now - lease.last_used >= IDLE_RETURN_SECONDS):
                await self._give_back(key_name, day, lease)

    async def return_all(self) -> None:
        """Give back every unused lease (on shutdown)."""
        for (key_name, day), lease in list(self._leases.items()):
            await self._give_back(key_name, day, lease)

    async def _give_back(self, key_name: str, day: str, lease: _Lease) -> None:
        amount, lease.available = lease.available, 0
        if amount > 0:
            try:
                await asyncio.to_thread(self._store.return_budget, key_name, day, amount)
            except Exception:
                log.exception("returning %d micro-dollars of lease for %s failed", amount,
                              key_name)


def _quota_exceeded(limit: int, worst: int, remaining: int) -> QuotaExceeded:
    now = datetime.now(UTC)
    reset = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = int((reset - now).total_seconds() // 60)
    return QuotaExceeded(
        f"Daily budget of ${limit / 1e6:.2f} for this key would be exceeded: this request "
        f"may cost up to ${worst / 1e6:.6f} and ${max(0, remaining) / 1e6:.6f} remains. "
        f"The budget resets at 00:00 UTC (in {minutes // 60}h {minutes % 60:02d}m).",
        headers={"retry-after": str(max(1, int((reset - now).total_seconds())))})
