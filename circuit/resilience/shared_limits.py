"""SharedRateLimiter: the fleet's requests- and tokens-per-minute buckets, in Redis.

The same token buckets as `rate_limit.RateLimiter`, but one per key for the whole fleet: each
admission is one Lua script that refills the key's buckets, checks them all and takes from them
all, or from none, atomically, on Redis' own clock (the replicas' clocks never meet). So a key
limited to 60 requests a minute gets 60 however many replicas serve it, and `Retry-After` is the
bucket's exact wait.

A settlement (tokens borrowed minus used) is sent without waiting for it: those gathered while
a pipeline is in flight go in one call in the next, usually beside other requests' admissions. Until it lands the key's
bucket holds the whole borrow, so the fleet errs towards refusing, never towards more.

When Redis is unreachable, admissions fall back to this process's own buckets (fail-open) or
are refused with 503 (fail-closed); either way the link is back in use once Redis answers.
"""

from __future__ import annotations

from circuit.errors import LimitsUnavailable
from circuit.resilience.rate_limit import (
    Clock,
    Limits,
    RateLimiter,
    check_fits,
    limit_text,
    refusal,
)
from circuit.resilience.redis_link import LUA_NOW, LinkDown, LuaScript, RedisLink

# Buckets are hashes {level, at}; a missing one is full. Each expires once it would have
# refilled, so idle keys leave nothing behind. ARGV[1] is the time ('' for Redis' TIME: only
# tests pass one), then per bucket its capacity and what to take.
_NOW = LUA_NOW + """
local function level_of(key, cap)
  local b = redis.call('HMGET', key, 'level', 'at')
  local level = tonumber(b[1]) or cap
  local at = tonumber(b[2]) or now
  if now > at then level = math.min(cap, level + (now - at) * cap / 60) end
  return level
end
local function store(key, cap, level)
  redis.call('HSET', key, 'level', string.format('%.17g', level),
             'at', string.format('%.17g', now))
  redis.call('PEXPIRE', key, math.ceil(math.max(0, cap - level) * 60000 / cap) + 1000)
end
"""

ADMIT = LuaScript("admit", _NOW + """
local levels, wait, which = {}, 0, 0
for i, key in ipairs(KEYS) do
  local cap, amount = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  levels[i] = level_of(key, cap)
  local missing = amount - levels[i]
  if missing > 0 and missing * 60 / cap > wait then
    wait, which = missing * 60 / cap, i
  end
end
if which > 0 then return {which, string.format('%.17g', wait)} end
for i, key in ipairs(KEYS) do
  local cap, amount = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  store(key, cap, levels[i] - amount)
end
return {0, '0'}
""")

#: Every settlement gathered since the last pipeline, in one call: per bucket its capacity and
#: the tokens used past the borrow (negative: given back).
SETTLE = LuaScript("settle", _NOW + """
for i, key in ipairs(KEYS) do
  local cap, more = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  store(key, cap, math.min(cap, level_of(key, cap) - more))
end
return 0
""")


class SharedRateLimiter:
    """The `Limiter` the gateway uses when CIRCUIT_REDIS_URL is set."""

    def __init__(self, link: RedisLink, *, prefix: str, fail_closed: bool = False,
                 local: RateLimiter | None = None, clock: Clock | None = None) -> None:
        self._link = link
        self._prefix = prefix + "rl:"
        self._fail_closed = fail_closed
        self.local = local or RateLimiter()
        self._clock = clock  # tests only: production buckets run on Redis' clock
        self._unsent: list[tuple[str, int, int]] = []  # (bucket, capacity, tokens more)

    def _key(self, kind: str, capacity: int, key: str) -> str:
        # Keyed by capacity too: a changed limit starts a fresh, full bucket, as locally.
        return f"{self._prefix}{kind}:{capacity}:{key}"

    def _now(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    async def admit(self, key: str, limits: Limits, tokens: int) -> None:
        """Take one request and `tokens` from the key's fleet-wide buckets (one round trip),
        or raise RateLimitExceeded; without Redis, see the fallback."""
        if limits.rpm is None and limits.tpm is None:
            return
        check_fits(limits, tokens)
        kinds = [kind for kind in ("rpm", "tpm") if getattr(limits, kind)]
        keys = [self._key(kind, getattr(limits, kind), key) for kind in kinds]
        args = [self._now()]
        for kind in kinds:
            args += [getattr(limits, kind), 1 if kind == "rpm" else tokens]
        try:
            which, wait = await self._link.run(ADMIT, keys, args)
        except LinkDown:
            return self._without_redis(key, limits, tokens)
        if which:
            raise refusal(float(wait), limit_text(kinds[which - 1], limits))

    def _without_redis(self, key: str, limits: Limits, tokens: int) -> None:
        if self._fail_closed:
            self._link.refusals += 1
            raise LimitsUnavailable(
                "Rate limits are shared through Redis, which cannot be reached, and this "
                "gateway refuses rather than enforce them per replica; retry shortly",
                headers={"retry-after": "1"})
        self._link.local_decisions += 1
        self.local.take(key, limits, tokens)

    def settle(self, key: str, limits: Limits, borrowed: int, used: int) -> None:
        """Charge (or give back) the difference, in the background."""
        if not limits.tpm or used == borrowed:
            return
        if not self._link.up:
            # Settled where it will be counted now; a borrow made in Redis just refills there.
            self.local.settle(key, limits, borrowed, used)
            return
        self._unsent.append((self._key("tpm", limits.tpm, key), limits.tpm, used - borrowed))
        self._link.send_later(self._settlements)

    def _settlements(self) -> list:
        """The settlements gathered since the last pipeline, as one call."""
        if not self._unsent:
            return []
        args = [self._now()]
        for _, capacity, more in self._unsent:
            args += [capacity, more]
        keys = [bucket for bucket, _, _ in self._unsent]
        self._unsent = []
        return [(SETTLE, keys, args)]
