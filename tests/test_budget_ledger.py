"""BudgetLedger on a real SQLite store: reservations, settlement, overruns and a slow database."""

from __future__ import annotations

import asyncio
import threading

import pytest

from circuit.accounting.budget import BudgetLedger, utc_day
from circuit.errors import QuotaExceeded, StoreUnavailable
from circuit.store.sqlite import SQLiteStore

LIMIT = 1_000


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "circuit.db")
    store.migrate()
    yield store
    store.close()


def test_settling_a_reservation_twice_releases_it_once(store):
    async def scenario():
        ledger = BudgetLedger(store)
        held = await ledger.reserve("k", LIMIT, 600)
        ledger.settle(held, 100)
        ledger.settle(held, 0)  # a second settlement of the same request
        await ledger.reserve("k", LIMIT, 500)
        with pytest.raises(QuotaExceeded):
            await ledger.reserve("k", LIMIT, 500)  # 100 spent + 500 held leave 400

    asyncio.run(scenario())


def test_an_overrun_is_booked_up_to_the_limit_and_no_further(store):
    async def scenario():
        ledger = BudgetLedger(store)
        held = await ledger.reserve("k", LIMIT, 100)
        ledger.settle(held, 50_000)  # the upstream billed far past the reservation
        await asyncio.sleep(0.2)  # the overrun is booked off the loop
        assert await asyncio.to_thread(store.granted_budget, "k", utc_day()) <= LIMIT
        with pytest.raises(QuotaExceeded):
            await ledger.reserve("k", LIMIT, 1)

    asyncio.run(scenario())


class SlowLeases:
    """The store, with budget leases that wait until released (a locked database)."""

    def __init__(self, store) -> None:
        self.store = store
        self.release = threading.Event()

    def lease_budget(self, *args):
        self.release.wait(30)
        return self.store.lease_budget(*args)

    def return_budget(self, *args):
        return self.store.return_budget(*args)


def test_requests_waiting_for_a_lease_all_go_on_together_once_it_arrives(store):
    """Counted in loop iterations, not seconds: a lock handed from waiter to waiter takes one
    iteration each, which a loop busy with other requests paces (1,000 streams opened at once
    waited past the lease deadline that way)."""
    slow = SlowLeases(store)

    async def scenario():
        ledger = BudgetLedger(slow)
        iterations = 0
        reserved_at: list[int] = []

        async def spin() -> None:  # the rest of a busy loop, one step an iteration
            nonlocal iterations
            while True:
                iterations += 1
                await asyncio.sleep(0)

        async def one() -> None:
            await ledger.reserve("k", 1_000_000, 1)  # one lease (a twentieth) covers all
            reserved_at.append(iterations)

        spinner = asyncio.create_task(spin())
        waiters = [asyncio.create_task(one()) for _ in range(200)]
        for _ in range(5):  # every waiter is queued behind the first one's lease
            await asyncio.sleep(0)
        leased_at = iterations
        slow.release.set()
        await asyncio.gather(*waiters)
        spinner.cancel()
        return leased_at, reserved_at

    leased_at, reserved_at = asyncio.run(scenario())
    assert len(reserved_at) == 200
    # The lease itself takes a worker thread's round trip; after it, the waiters go at once.
    first = min(reserved_at)
    assert max(reserved_at) - first <= 3, (leased_at, first, max(reserved_at))


class CountedLeases(SlowLeases):
    """SlowLeases that count the database's lease calls."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.calls = 0

    def lease_budget(self, *args):
        self.calls += 1
        return super().lease_budget(*args)


def test_requests_queued_behind_a_lease_are_leased_for_in_that_one_call(store):
    leases = CountedLeases(store)

    async def scenario() -> int:
        ledger = BudgetLedger(leases)
        # Each request reserves more than a twentieth of the limit: one lease each, before.
        burst = [asyncio.create_task(ledger.reserve("k", 1_000_000, 30_000)) for _ in range(30)]
        for _ in range(5):  # every request is queued behind the first one's lease
            await asyncio.sleep(0)
        leases.release.set()
        held = await asyncio.gather(*burst)
        assert all(r is not None for r in held)
        return leases.calls

    assert asyncio.run(scenario()) <= 2


def test_a_burst_past_the_limit_is_still_refused_past_it(store):
    leases = CountedLeases(store)

    async def scenario() -> tuple[int, int]:
        ledger = BudgetLedger(leases)
        burst = [asyncio.create_task(ledger.reserve("k", 1_000_000, 300_000)) for _ in range(5)]
        for _ in range(5):
            await asyncio.sleep(0)
        leases.release.set()
        results = await asyncio.gather(*burst, return_exceptions=True)
        return (sum(1 for r in results if isinstance(r, QuotaExceeded)),
                await asyncio.to_thread(store.granted_budget, "k", utc_day()))

    refused, granted = asyncio.run(scenario())
    assert refused == 2 and granted <= 1_000_000


def test_a_lease_the_database_does_not_answer_in_time_is_503_and_given_back_later(store):
    slow = SlowLeases(store)

    async def scenario():
        ledger = BudgetLedger(slow, lease_timeout=0.2)
        with pytest.raises(StoreUnavailable):
            await ledger.reserve("k", LIMIT, 100)
        slow.release.set()  # the database answers after all, granting the lease
        for _ in range(200):
            await asyncio.sleep(0.02)
            if await asyncio.to_thread(store.granted_budget, "k", utc_day()) == 0:
                return
        raise AssertionError("the late lease was never given back")

    asyncio.run(scenario())
