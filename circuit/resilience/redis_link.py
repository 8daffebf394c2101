"""RedisLink: one gateway process's connection to the fleet's Redis, and whether it works.

Scripts are sent through `run`, which pipelines every call made in the same turn of the event
loop (and those queued while a pipeline is in flight: one pipeline is in flight at a time) into
one write and one read. Under load a request's admission, other requests' admissions and the
settlements gathered meanwhile (`send_later`) share a round trip, and a round trip's system
calls, which cost more than the Lua they carry, are paid once per batch.

When Redis stops answering the link goes down: `run` raises LinkDown at once (no request waits
on a dead server), the outage is logged once, and a watcher pings every half second until
Redis is back, then tells whoever registered `on_up` (breakers resynchronise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

log = logging.getLogger("circuit.redis")

#: Seconds between health checks (and breaker resynchronisations) of the watcher.
WATCH_SECONDS = 0.5
#: Seconds a settlement may wait for a pipeline to ride in before it is sent on its own.
LINGER_SECONDS = 0.02


class LinkDown(Exception):
    """Redis cannot be used now: the caller decides locally (or refuses, fail-closed)."""


#: Lua that sets `now`, in seconds: ARGV[1] when given (tests, on a fake clock), else Redis'
#: own clock, the one every replica shares.
LUA_NOW = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""


@dataclass(frozen=True)
class LuaScript:
    """A Lua script, called by its SHA1 and loaded on first use (again after a restart)."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


def redis_address(url: str) -> str:
    """Where a Redis URL points, for logs and /readyz: host:port/db, never the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"


_Call = tuple[LuaScript, Sequence, Sequence, asyncio.Future | None]


class RedisLink:
    def __init__(self, url: str, *, timeout: float, watch_seconds: float = WATCH_SECONDS,
                 fallback: str = "open") -> None:
        self.address = redis_address(url)
        self.fallback = fallback
        # One immediate retry on a broken connection (a pooled one a restarted Redis closed),
        # none on a timeout: a call to a Redis that does not answer falls back at once, and
        # the watcher finds out when it is back.
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, client_name="circuit",
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
        self._watch_seconds = watch_seconds
        self.up = False
        self.error: str | None = "not connected yet"
        self.down_since: float | None = time.monotonic()
        #: Times the link was lost, and decisions taken without Redis because of it.
        self.outages = 0
        self.local_decisions = 0
        self.refusals = 0
        #: Scripts run, and the round trips (pipelines) that carried them.
        self.calls = 0
        self.round_trips = 0
        self.on_up: list[Callable[[], Awaitable[None]]] = []
        self.on_watch: list[Callable[[], Awaitable[None]]] = []
        self._came_up = asyncio.Event()
        self._queue: list[_Call] = []
        self._collectors: set[Callable[[], list]] = set()
        self._lingering: asyncio.TimerHandle | None = None
        self._drainer: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (a Redis that is down only starts the fallback) and start watching."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self.outages = 1
            self.error = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("Redis at %s unreachable at start (%s): %s", self.address, self.error,
                        self._fallback_text())
        else:
            self._now_up()
        self._watcher = asyncio.create_task(self._watch(), name="circuit-redis-watch")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 2.0)  # the last settlements
        if self._lingering is not None:
            self._lingering.cancel()
        tasks = [t for t in (self._watcher, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()

    async def wait_up(self) -> None:
        await self._came_up.wait()

    def spawn(self, work: Awaitable) -> None:
        """Run `work` in the background (a fire-and-forget Redis call), keeping a reference."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None \
                and not isinstance(error, LinkDown):
            log.error("a background Redis call failed", exc_info=error)

    # -- health ----------------------------------------------------------------------------

    def lost(self, error: BaseException) -> None:
        """Redis failed a call: go down (logged once per outage)."""
        if not self.up:
            return
        self.up = False
        self._came_up.clear()
        self.outages += 1
        self.down_since = time.monotonic()
        self.error = f"{type(error).__name__}: {error}"[:200]
        log.warning("Redis at %s unreachable (%s): %s", self.address, self.error,
                    self._fallback_text())

    def _fallback_text(self) -> str:
        return ("rate limits and breakers are enforced by each replica on its own until it "
                "is back" + (" (fallback: open)" if self.fallback == "open" else
                             "; rate-limited keys get 503 until then (fallback: closed)"))

    def _now_up(self) -> None:
        self.up, self.error, self.down_since = True, None, None
        self._came_up.set()

    async def _check(self) -> None:
        """While down: ping, and when Redis answers, go up and tell `on_up`."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:200]
            return
        log.warning("Redis at %s is back after %.1f s: limits and breakers are shared again",
                    self.address, time.monotonic() - (self.down_since or time.monotonic()))
        self._now_up()
        for callback in self.on_up:
            await self._quietly(callback)

    async def _watch(self) -> None:
        trips = self.round_trips
        while True:
            await asyncio.sleep(self._watch_seconds)
            if not self.up:
                await self._check()
                continue
            if self.round_trips == trips and not self.on_watch:
                # Idle: find out now, not on the next request, that Redis went away.
                try:
                    await self.client.ping()
                except (RedisError, OSError) as exc:
                    self.lost(exc)
            for callback in self.on_watch:
                await self._quietly(callback)
            trips = self.round_trips

    async def _quietly(self, callback: Callable[[], Awaitable[None]]) -> None:
        try:
            await callback()
        except LinkDown:
            pass
        except Exception:
            log.exception("Redis follow-up %s failed", getattr(callback, "__name__", callback))

    # -- calls -----------------------------------------------------------------------------

    async def run(self, script: LuaScript, keys: Sequence, args: Sequence):
        """The script's answer; LinkDown when Redis cannot give it."""
        if not self.up:
            raise LinkDown(self.error)
        future = asyncio.get_running_loop().create_future()
        self._enqueue((script, keys, args, future))
        return await future

    def send_later(self, collect: Callable[[], list[tuple[LuaScript, Sequence, Sequence]]]
                   ) -> None:
        """Have `collect()` add calls, whose answers no one waits for, to the next pipeline, as
        late as possible: what a caller accumulates meanwhile (settlements) goes in one call,
        beside the next request's admission, or on its own after `LINGER_SECONDS` if no
        request comes. Lost when Redis fails them."""
        if not self.up:
            return
        self._collectors.add(collect)
        if self._lingering is None and self._drainer is None:
            self._lingering = asyncio.get_running_loop().call_later(LINGER_SECONDS,
                                                                    self._linger_over)

    def _linger_over(self) -> None:
        self._lingering = None
        self._enqueue(None)

    def _enqueue(self, call: _Call | None) -> None:
        if call is not None:
            self._queue.append(call)
        if self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain())
            self._tasks.add(self._drainer)
            self._drainer.add_done_callback(self._forget)

    async def _drain(self) -> None:
        try:
            while self._queue or self._collectors:
                collectors, self._collectors = self._collectors, set()
                # What was gathered goes first: an admission sees the tokens given back.
                batch = [(*call, None) for collect in collectors for call in collect()]
                batch += self._queue
                self._queue = []
                if batch:
                    await self._send(batch)
        finally:
            self._drainer = None

    async def flush(self) -> None:
        """Send everything queued or gathered (settlements) now, and wait until it is sent."""
        if self._collectors:
            self._enqueue(None)
        while self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def _send(self, batch: list[_Call]) -> None:
        if not self.up:
            # Queued while an earlier pipeline found Redis gone: fall back now, without
            # waiting for a timeout again.
            self._fail(batch, LinkDown(self.error))
            return
        try:
            results = await self._pipeline(batch)
            missing = [i for i, result in enumerate(results)
                       if isinstance(result, NoScriptError)]
            if missing:  # a restarted (or flushed) Redis: load the scripts, send those again
                for script in {batch[i][0] for i in missing}:
                    await self.client.script_load(script.source)
                for i, result in zip(missing, await self._pipeline([batch[i] for i in missing]),
                                     strict=True):
                    results[i] = result
        except (RedisError, OSError) as exc:
            if not isinstance(exc, ResponseError):
                self.lost(exc)
            self._fail(batch, LinkDown(str(exc)))
            return
        for (script, *_, future), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                log.error("Redis script %s failed: %s", script.name, result)
                result = LinkDown(str(result))
            if future is None or future.done():
                continue  # sent without waiting, or its caller is gone (a client that left)
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Call], error: LinkDown) -> None:
        for *_, future in batch:
            if future is not None and not future.done():
                future.set_exception(error)

    async def _pipeline(self, batch: Sequence[_Call]) -> list:
        self.round_trips += 1
        self.calls += len(batch)
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return await pipe.execute(raise_on_error=False)

    # -- reporting -------------------------------------------------------------------------

    def readiness(self) -> dict:
        """The /readyz check: fail-open serves without Redis (ready, not shared), fail-closed
        refuses rate-limited keys (not ready)."""
        check = {"ok": self.up or self.fallback == "open", "shared": self.up,
                 "address": self.address, "fallback": self.fallback}
        if not self.up:
            check["error"] = self.error
            check["down_seconds"] = round(time.monotonic() - (self.down_since or 0), 1)
        return check
