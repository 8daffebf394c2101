"""BreakerBoard: one process's shared breakers, kept in step with the fleet.

Changes arrive by Redis pub/sub as they happen (a breaker opened on one replica is open on
every other within a message's latency), and every breaker is also read back on each watch of
the link (every half second) and whenever Redis returns, so a message missed while subscribing
again is never missed for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from redis.exceptions import RedisError

from circuit.resilience.redis_link import WATCH_SECONDS, LinkDown, RedisLink
from circuit.resilience.shared_breaker import FleetState, SharedBreaker

log = logging.getLogger("circuit.redis")


class BreakerBoard:
    def __init__(self, link: RedisLink, breakers: Mapping[str, SharedBreaker]) -> None:
        self._link = link
        self._breakers = breakers
        self._channel = next(iter(breakers.values())).channel if breakers else None
        self._task: asyncio.Task | None = None
        #: Messages applied (tests count them; operators never need to).
        self.received = 0

    async def start(self) -> None:
        if self._channel is None:
            return
        self._link.on_up.append(self.sync)
        self._link.on_watch.append(self.sync)
        if self._link.up:
            with contextlib.suppress(Exception):
                await self.sync()
        self._task = asyncio.create_task(self._listen(), name="circuit-breaker-board")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sync(self) -> None:
        """Read every breaker's fleet state (one pipelined round trip) and apply it."""
        await asyncio.gather(*(breaker.sync() for breaker in self._breakers.values()))

    async def _listen(self) -> None:
        while True:
            await self._link.wait_up()
            pubsub = self._link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                await self.sync()  # what changed while no one was listening
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self.deliver(message["data"])
            except (RedisError, OSError) as exc:
                self._link.lost(exc)
                await asyncio.sleep(WATCH_SECONDS)
            except LinkDown:
                await asyncio.sleep(WATCH_SECONDS)
            except Exception:
                log.exception("the breakers channel failed; listening again")
                await asyncio.sleep(WATCH_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def deliver(self, data: bytes) -> None:
        try:
            provider, fleet = FleetState.from_message(data)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed message on %s", self._channel)
            return
        breaker = self._breakers.get(provider)
        if breaker is not None:
            self.received += 1
            breaker.apply(fleet)
