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

from circuit.errors import QuotaExceeded, StoreUnavailable
from circuit.money import usd_text
from circuit.store.timestamps import utc_now

log = logging.getLogger("circuit.budget")

#: Share of a key's daily limit leased at a time (a larger request leases what it needs).
LEASE_SHARE = 20
#: A lease untouched this long goes back, so other processes may use it.
IDLE_RETURN_SECONDS = 2.0
#: Seconds a request may wait for the database to lease it budget (a locked SQLite file, an
#: unreachable PostgreSQL) before it is answered 503 `store_unavailable`.
LEASE_TIMEOUT = 3.0


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
    limit: int  # the key's daily limit when it was made
    settled: bool = False  # settling twice would release the same money twice


@dataclass
class _Lease:
    limit: int
    available: int = 0
    last_used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Set when the request holding `lock` is done leasing: everyone waiting wakes at once.
    leased: asyncio.Event = field(default_factory=asyncio.Event)
    #: What the requests waiting for that lease will reserve: leased with it, in one call.
    waiting: int = 0


class BudgetLedger:
    """Reserve before a call, settle after it."""

    def __init__(self, store: LeaseStore, clock: Callable[[], float] = time.monotonic,
                 lease_timeout: float = LEASE_TIMEOUT) -> None:
        self._store = store
        self._clock = clock
        self._lease_timeout = lease_timeout
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._held: dict[str, int] = {}  # micro-dollars reserved by requests in flight, per key

    def held(self, key_name: str) -> int:
        """Micro-dollars requests of this key hold right now (0 once all have settled)."""
        return self._held.get(key_name, 0)

    def _hold(self, reservation: Reservation) -> Reservation:
        self._held[reservation.key_name] = self.held(reservation.key_name) + reservation.amount
        return reservation

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
            return self._hold(Reservation(key_name, day, worst_micros, limit_micros))
        try:
            # One deadline for the whole wait, the wait for another request's lease included:
            # a stalled database answers 503, never a stall as long as its lock.
            async with asyncio.timeout(self._lease_timeout):
                while lease.lock.locked():
                    # Another request is leasing: wait for it together and try memory again.
                    # Not in the lock's queue, which hands the lock on one waiter per loop
                    # iteration: 1,000 streams opened at once on a busy loop waited past the
                    # deadline behind a lease that had long arrived.
                    lease.waiting += worst_micros
                    try:
                        await lease.leased.wait()
                    finally:
                        lease.waiting -= worst_micros
                    if lease.limit == limit_micros and lease.available >= worst_micros:
                        lease.available -= worst_micros
                        return self._hold(Reservation(key_name, day, worst_micros,
                                                      limit_micros))
                async with lease.lock:
                    lease.leased = asyncio.Event()
                    try:
                        return await self._reserve_leasing(key_name, day, lease, limit_micros,
                                                           worst_micros)
                    finally:
                        lease.leased.set()
        except TimeoutError:
            raise StoreUnavailable(
                f"The database did not lease this key's budget within "
                f"{self._lease_timeout:g}s; try again shortly",
                headers={"retry-after": "1"}) from None

    async def _reserve_leasing(self, key_name: str, day: str, lease: _Lease,
                               limit_micros: int, worst_micros: int) -> Reservation:
        """The reservation, leasing from the store what memory lacks (holding the lock)."""
        if lease.limit != limit_micros:
            await self._give_back(key_name, day, lease)
            lease.limit = limit_micros
        while lease.available < worst_micros:
            need = worst_micros - lease.available
            # Enough for the requests queued behind this one too: a burst against a small
            # limit (each request a large share of a twentieth) otherwise leased one database
            # round trip per request, in turn, and the last waited hundreds of milliseconds.
            want = max(need + lease.waiting, limit_micros // LEASE_SHARE)
            granted, total = await self._lease(key_name, day, want, need, limit_micros)
            if not granted:
                raise _quota_exceeded(limit_micros, worst_micros,
                                      limit_micros - total + max(0, lease.available))
            lease.available += granted
        lease.available -= worst_micros
        return self._hold(Reservation(key_name, day, worst_micros, limit_micros))

    async def _lease(self, key_name: str, day: str, want: int, need: int,
                     limit: int) -> tuple[int, int]:
        """One lease from the store, on a worker thread. A lease that arrives after its
        request gave up is given back, so a slow database strands no budget."""
        call = asyncio.get_running_loop().run_in_executor(
            None, self._store.lease_budget, key_name, day, want, need, limit)
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(lambda done: self._give_back_late(key_name, day, done))
            raise
        except Exception as exc:
            log.error("leasing budget for %s failed: %s", key_name, exc)
            raise StoreUnavailable("The database could not lease this key's budget; try "
                                   "again shortly", headers={"retry-after": "1"}) from None

    def _give_back_late(self, key_name: str, day: str, done: asyncio.Future) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        granted, _ = done.result()
        if granted:
            asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._store.return_budget, key_name, day, granted))

    def settle(self, reservation: Reservation | None, actual_micros: int | None) -> None:
        """Keep the actual cost of a reserved call and release the rest of its reservation."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        self._held[reservation.key_name] -= reservation.amount
        lease = self._leases.get((reservation.key_name, reservation.day))
        if lease is None:
            return
        actual = reservation.amount if actual_micros is None else actual_micros
        lease.available += reservation.amount - actual
        if lease.available < 0:
            # Spent past the reservation: only an upstream that broke its contract does this
            # (the record says so, as a usage anomaly). The overrun is booked against the
            # key's remaining budget, up to its limit and never past it.
            debt, lease.available = -lease.available, 0
            asyncio.get_running_loop().create_task(self._cover(reservation, debt))

    async def _cover(self, reservation: Reservation, debt: int) -> None:
        try:
            await asyncio.to_thread(self._store.lease_budget, reservation.key_name,
                                    reservation.day, debt, 1, reservation.limit)
        except Exception:
            log.exception("booking an overrun of %d micro-dollars for %s failed", debt,
                          reservation.key_name)

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
    # The advice on how to reserve less is the door's (circuit.gateway.doors.worded).
    return QuotaExceeded(
        f"Daily budget of {usd_text(limit)} for this key would be exceeded: this request "
        f"may cost up to {usd_text(worst)} and {usd_text(max(0, remaining))} remains.",
        f"The budget resets at 00:00 UTC (in {minutes // 60}h {minutes % 60:02d}m).",
        headers={"retry-after": str(max(1, int((reset - now).total_seconds())))})
