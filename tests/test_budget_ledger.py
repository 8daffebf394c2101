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
