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
