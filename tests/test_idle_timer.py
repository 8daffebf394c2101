"""IdleTimer: each wait bounded on its own, with one timer for all of a stream's waits."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from circuit.providers.idle_timer import IdleTimer


def test_a_wait_longer_than_the_bound_raises_timeout_error():
    async def scenario():
        timer = IdleTimer(0.05)
        with pytest.raises(TimeoutError), timer:
            await asyncio.sleep(5)

    asyncio.run(scenario())


def test_many_short_waits_are_each_bounded_not_their_sum():
    async def scenario():
        timer = IdleTimer(0.2)
        for _ in range(8):  # 0.4 s of waits in all, each well within 0.2 s
            with timer:
                await asyncio.sleep(0.05)
        timer.cancel()
        return "ok"

    assert asyncio.run(scenario()) == "ok"


def test_time_between_waits_does_not_count():
    async def scenario():
        timer = IdleTimer(0.1)
        with timer:
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)  # the relay writing to a slow client: not a wait upstream
        with timer:
            await asyncio.sleep(0.02)
        timer.cancel()
        return "ok"

    assert asyncio.run(scenario()) == "ok"


def test_a_wait_after_a_timed_out_one_is_bounded_again():
    async def scenario():
        timer = IdleTimer(0.05)
        with pytest.raises(TimeoutError), timer:
            await asyncio.sleep(5)
        with pytest.raises(TimeoutError), timer:
            await asyncio.sleep(5)
        assert asyncio.current_task().cancelling() == 0

    asyncio.run(scenario())


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def waiter(timer: IdleTimer):
        with timer:
            await asyncio.sleep(5)

    async def scenario():
        task = asyncio.create_task(waiter(IdleTimer(10)))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_cancellation_arriving_with_the_timeout_wins():
    async def waiter(timer: IdleTimer):
        with timer:
            await asyncio.sleep(5)

    async def scenario():
        # A bound of 0: the timer is due at once. The client's cancellation is due just after
        # it, so both run in the loop's same turn, before the waiter resumes.
        task = asyncio.create_task(waiter(IdleTimer(0)))
        await asyncio.sleep(0)  # the waiter is in its wait, its timer armed
        asyncio.get_running_loop().call_later(0, task.cancel)  # the client leaves
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


async def _task_outlives_its_end(cancel: bool) -> bool:
    async def one_wait(timer: IdleTimer):
        with timer:
            await asyncio.sleep(0)
        if cancel:
            timer.cancel()

    task = asyncio.create_task(one_wait(IdleTimer(60)))
    await task
    await asyncio.sleep(0)  # the awaiting task's wake-up lets go of it
    gone = weakref.ref(task)
    del task
    gc.collect()
    return gone() is not None


def test_a_cancelled_timer_keeps_no_reference_to_its_task():
    assert asyncio.run(_task_outlives_its_end(cancel=True)) is False


def test_a_timer_left_armed_keeps_its_task_until_it_fires():
    # Why the stream cancels its timer at its end: 1,000 streams would otherwise each be
    # kept for the idle timeout after they ended.
    assert asyncio.run(_task_outlives_its_end(cancel=False)) is True
