"""Deadline: each wait bounded on its own, kept by one sweep per event loop."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from circuit.providers import deadline as deadline_module
from circuit.providers.deadline import Deadline


def test_a_wait_longer_than_the_bound_raises_timeout_error():
    async def scenario():
        with pytest.raises(TimeoutError), Deadline(0.05):
            await asyncio.sleep(5)

    asyncio.run(scenario())


def test_no_bound_never_times_out():
    async def scenario():
        with Deadline(None):
            await asyncio.sleep(0.1)
        return "ok"

    assert asyncio.run(scenario()) == "ok"


def test_many_short_waits_are_each_bounded_not_their_sum():
    async def scenario():
        idle = Deadline(0.2)
        for _ in range(8):  # 0.4 s of waits in all, each well within 0.2 s
            with idle:
                await asyncio.sleep(0.05)
        return "ok"

    assert asyncio.run(scenario()) == "ok"


def test_time_between_waits_does_not_count():
    async def scenario():
        idle = Deadline(0.1)
        with idle:
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)  # the relay writing to a slow client: not a wait upstream
        with idle:
            await asyncio.sleep(0.02)
        return "ok"

    assert asyncio.run(scenario()) == "ok"


def test_a_wait_after_a_timed_out_one_is_bounded_again():
    async def scenario():
        idle = Deadline(0.05)
        with pytest.raises(TimeoutError), idle:
            await asyncio.sleep(5)
        with pytest.raises(TimeoutError), idle:
            await asyncio.sleep(5)
        assert asyncio.current_task().cancelling() == 0

    asyncio.run(scenario())


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def waiter():
        with Deadline(10):
            await asyncio.sleep(5)

    async def scenario():
        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_cancellation_arriving_with_the_timeout_wins(monkeypatch):
    # A bound of 0 and sweeps at once: the deadline expires at the loop's next turn. The
    # client's cancellation is due just after it, so both run in that same turn, before the
    # waiter resumes.
    monkeypatch.setattr(deadline_module, "RESOLUTION", 0)

    async def waiter():
        with Deadline(0):
            await asyncio.sleep(5)

    async def scenario():
        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)  # the waiter is in its wait, the sweep armed
        asyncio.get_running_loop().call_later(0, task.cancel)  # the client leaves
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_waits_on_two_loops_at_once_are_each_bounded():
    outcomes: list[str] = []

    async def one_wait():
        try:
            with Deadline(0.1):
                await asyncio.sleep(5)
        except TimeoutError:
            outcomes.append("timed out")

    # Another loop in another thread (as the CLI and the tests run their own) takes the
    # module's sweep over while this loop's wait is still in its own.
    async def scenario():
        first = asyncio.create_task(one_wait())
        await asyncio.sleep(0.01)
        other = threading.Thread(target=asyncio.run, args=(one_wait(),))
        other.start()
        await first
        await asyncio.to_thread(other.join)

    asyncio.run(scenario())
    assert outcomes == ["timed out", "timed out"]


def test_a_finished_wait_keeps_no_reference_to_its_task():
    async def one_wait(idle: Deadline):
        with idle:
            await asyncio.sleep(0)

    async def scenario():
        idle = Deadline(60)  # kept, as a stream keeps its idle deadline
        task = asyncio.create_task(one_wait(idle))
        await task
        await asyncio.sleep(0)  # the awaiting task's wake-up lets go of it
        gone = weakref.ref(task)
        del task
        gc.collect()
        return gone() is None

    assert asyncio.run(scenario())
