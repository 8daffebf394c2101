"""ClientWatch: where the server gives no HangUp, a request waiting on its answer is watched
for a hang-up only once it has waited WATCH_AFTER seconds, so a quick request never reads
`receive` (nor pays for a task); where it gives one, the watch only registers with it."""

from __future__ import annotations

import asyncio

import pytest

from circuit.gateway.client_watch import WATCH_AFTER, ClientWatch
from circuit.gateway.hang_up import HangUp


class Client:
    """An ASGI `receive` after the body: it answers only when told the client hung up."""

    def __init__(self) -> None:
        self.reads = 0
        self.messages: asyncio.Queue[dict] = asyncio.Queue()

    async def receive(self) -> dict:
        self.reads += 1
        return await self.messages.get()


def test_a_quick_request_is_never_watched():
    async def main() -> int:
        client = Client()
        for _ in range(100):
            watch = ClientWatch(client.receive)
            watch.start(cancel=True)
            await asyncio.sleep(0)
            watch.stop()
        await asyncio.sleep(WATCH_AFTER * 3)
        return client.reads

    assert asyncio.run(main()) == 0


def test_a_hang_up_during_a_long_wait_cancels_the_request():
    async def main() -> tuple[bool, bool]:
        client = Client()
        watch = ClientWatch(client.receive)

        async def request() -> None:
            watch.start(cancel=True)
            await asyncio.sleep(30)  # the upstream thinks

        task = asyncio.create_task(request())
        await asyncio.sleep(WATCH_AFTER * 2.5)
        assert client.reads == 1, "watched once it had waited"
        await client.messages.put({"type": "http.disconnect"})
        with pytest.raises(asyncio.CancelledError):
            await task
        return watch.gone, task.cancelled()

    assert asyncio.run(main()) == (True, True)


def test_a_message_that_is_not_a_hang_up_leaves_the_request_waiting():
    async def main() -> tuple[bool, int]:
        client = Client()
        watch = ClientWatch(client.receive)
        watch.start(cancel=True)
        await asyncio.sleep(WATCH_AFTER * 2.5)
        await client.messages.put({"type": "http.request", "body": b"", "more_body": False})
        await asyncio.sleep(0.05)
        gone = watch.gone
        watch.stop()
        return gone, client.reads

    assert asyncio.run(main()) == (False, 2)


def test_stopping_a_watched_request_ends_its_watcher():
    async def main() -> tuple[bool, bool]:
        client = Client()
        watch = ClientWatch(client.receive)

        async def request() -> None:
            watch.start(cancel=True)
            await asyncio.sleep(WATCH_AFTER * 2.5)
            watch.stop()  # the answer came: nothing may cancel the request now
            await client.messages.put({"type": "http.disconnect"})
            await asyncio.sleep(0.05)

        task = asyncio.create_task(request())
        await task
        return watch.gone, task.cancelled()

    assert asyncio.run(main()) == (False, False)


def test_a_hang_up_marks_a_request_that_is_not_to_be_cancelled_gone_and_lets_it_run():
    async def main() -> tuple[bool, bool]:
        client = Client()
        watch = ClientWatch(client.receive)

        async def request() -> bool:
            watch.start(cancel=False)
            await asyncio.sleep(WATCH_AFTER * 2.5)
            await client.messages.put({"type": "http.disconnect"})
            await asyncio.sleep(0.05)
            watch.stop()
            return watch.gone

        task = asyncio.create_task(request())
        return await task, task.cancelled()

    assert asyncio.run(main()) == (True, False)


def test_with_a_hang_up_to_tell_it_a_watch_reads_nothing_and_cancels_at_once():
    async def main() -> tuple[bool, bool, int]:
        client = Client()
        hang_up = HangUp()
        watch = ClientWatch(client.receive, hang_up)

        async def request() -> None:
            watch.start(cancel=True)
            await asyncio.sleep(30)  # the upstream thinks

        task = asyncio.create_task(request())
        await asyncio.sleep(0)
        hang_up.fire()  # the connection is lost: no sweep, no watcher to wait for
        with pytest.raises(asyncio.CancelledError):
            await task
        return watch.gone, task.cancelled(), client.reads

    assert asyncio.run(main()) == (True, True, 0)


def test_a_stopped_watch_is_not_told_of_a_later_hang_up():
    async def main() -> tuple[bool, bool]:
        hang_up = HangUp()
        watch = ClientWatch(Client().receive, hang_up)

        async def request() -> None:
            watch.start(cancel=True)
            await asyncio.sleep(0)
            watch.stop()
            hang_up.fire()
            await asyncio.sleep(0.01)

        task = asyncio.create_task(request())
        await task
        return watch.gone, task.cancelled()

    assert asyncio.run(main()) == (False, False)


def test_a_client_gone_before_the_watch_starts_is_noticed_when_it_starts():
    async def main() -> bool:
        hang_up = HangUp()
        hang_up.fire()
        watch = ClientWatch(Client().receive, hang_up)
        watch.start(cancel=False)
        watch.stop()
        return watch.gone

    assert asyncio.run(main()) is True
