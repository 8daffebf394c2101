"""SharedBreaker: a provider's breaker whose open and half-open states the fleet shares.

Each replica still watches its own calls (the closed state's window and consecutive failures
are its own, as in `breaker.CircuitBreaker`). What the fleet shares, through one Redis hash per
provider, is the verdict:

- **Open.** A replica whose breaker opens writes it to Redis, which publishes it; every other
  replica opens its own at once, with the same cool-down, and stops calling the provider.
- **Half-open.** When the cool-down is over, trial calls are claimed from Redis: at most
  `half_open_calls` for the whole fleet in a round. Their outcomes go back to Redis, which
  closes the breaker everywhere once they all succeeded, or opens it again at the first failure.
  A round whose trials never report (their replica died) is restarted after `trial_lease`.

Every change carries a version (Redis' clock in microseconds, always increasing), so a
replica applies each once and in order, whether it came by message, in a reply, or by the
periodic resynchronisation. A closed breaker asks Redis nothing: the hot path pays only while
a provider is down. Without Redis, the breaker works as a local one (its base class) and
publishes what it learnt once Redis is back.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from circuit.resilience.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerPolicy,
    CircuitBreaker,
    Clock,
    Listener,
    Permit,
    _Closed,
    _HalfOpen,
    _Open,
    _State,
)
from circuit.resilience.redis_link import LUA_NOW, LinkDown, LuaScript, RedisLink

#: Seconds a replica waits before asking again while the fleet's trial calls are out.
RECHECK_SECONDS = 0.25
#: Seconds a breaker's record stays in Redis after its last change (closed is the same as gone).
RECORD_TTL = 86_400

# KEYS[1]: the provider's hash. ARGV[1]: the time ('' for Redis' TIME: only tests pass one),
# ARGV[2]: the channel, ARGV[3]: the provider. Every script answers
# {state, version, ms to probe, granted, reason, holder}.
_COMMON = LUA_NOW + """
local b = redis.call('HMGET', KEYS[1], 'state', 'version', 'probe_at', 'trials', 'succeeded',
                     'round_at', 'reason', 'holder')
local state, version = b[1] or 'closed', tonumber(b[2]) or 0
local probe_at, trials, succeeded = tonumber(b[3]) or 0, tonumber(b[4]) or 0, tonumber(b[5]) or 0
local round_at, reason, holder = tonumber(b[6]) or 0, b[7] or '', b[8] or ''
local function text(n) return string.format('%.0f', n) end
local function to_probe() return math.max(0, math.ceil((probe_at - now) * 1000)) end
local function reply(granted)
  return {state, text(version), to_probe(), granted, reason, holder}
end
local function save()
  redis.call('HSET', KEYS[1], 'state', state, 'version', text(version),
             'probe_at', string.format('%.17g', probe_at), 'trials', trials,
             'succeeded', succeeded, 'round_at', string.format('%.17g', round_at),
             'reason', reason, 'holder', holder)
  redis.call('EXPIRE', KEYS[1], RECORD_TTL)
end
local function change(to, why, by)
  state, reason, holder = to, why, by
  version = math.max(math.floor(now * 1000000), version + 1)
  trials, succeeded = 0, 0
  save()
  redis.call('PUBLISH', ARGV[2], cjson.encode({p = ARGV[3], s = state, v = text(version),
                                              ms = to_probe(), r = reason, h = holder}))
end
""".replace("RECORD_TTL", str(RECORD_TTL))

#: ARGV[4]: cool-down seconds, [5] reason, [6] holder. Opens unless already open.
TRIP = LuaScript("breaker_trip", _COMMON + """
if state ~= 'open' then
  probe_at = now + tonumber(ARGV[4])
  change('open', ARGV[5], ARGV[6])
end
return reply(0)
""")

#: ARGV[4]: trial calls per round, [5] trial lease seconds. Grants a trial call, or not.
CLAIM = LuaScript("breaker_claim", _COMMON + """
if state == 'closed' or (state == 'open' and now < probe_at) then return reply(0) end
if state == 'open' or now - round_at > tonumber(ARGV[5]) then
  -- the first to find the cool-down over (or a round abandoned) starts a round of trials
  state = 'half_open'
  version = math.max(math.floor(now * 1000000), version + 1)
  trials, succeeded, round_at = 0, 0, now
end
local granted = 0
if trials + succeeded < tonumber(ARGV[4]) then
  trials, granted = trials + 1, 1
end
save()
return reply(granted)
""")

#: ARGV[4]: the round's version, [5] success|failure|abandoned, [6] trial calls per round,
#: [7] cool-down seconds, [8] reason, [9] holder. A verdict from another round is ignored.
VERDICT = LuaScript("breaker_verdict", _COMMON + """
if state ~= 'half_open' or text(version) ~= ARGV[4] then return reply(0) end
trials = math.max(0, trials - 1)
if ARGV[5] == 'failure' then
  probe_at = now + tonumber(ARGV[7])
  change('open', ARGV[8], ARGV[9])
elseif ARGV[5] == 'success' then
  succeeded = succeeded + 1
  if succeeded >= tonumber(ARGV[6]) then change('closed', ARGV[8], ARGV[9]) else save() end
else
  save()
end
return reply(0)
""")

#: ARGV[4]: reason, [5] holder.
RESET = LuaScript("breaker_reset", _COMMON + """
change('closed', ARGV[4], ARGV[5])
return reply(0)
""")

READ = LuaScript("breaker_read", _COMMON + "return reply(0)\n")


@dataclass(frozen=True, slots=True)
class FleetState:
    """A breaker's state as Redis has it (a script's reply, or a published change)."""

    state: str
    version: int
    ms_to_probe: int
    granted: bool = False
    reason: str = ""
    holder: str = ""

    @classmethod
    def from_reply(cls, reply: list) -> FleetState:
        state, version, ms, granted, reason, holder = reply
        return cls(_text(state), int(version), int(ms), bool(granted), _text(reason),
                   _text(holder))

    @classmethod
    def from_message(cls, data: bytes) -> tuple[str, FleetState]:
        """(provider, state) from a message on the breakers channel."""
        m = orjson.loads(data)
        return m["p"], cls(m["s"], int(m["v"]), int(m["ms"]), False, m["r"], m["h"])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SharedBreaker(CircuitBreaker):
    def __init__(self, provider: str, policy: BreakerPolicy | None = None, *, link: RedisLink,
                 prefix: str, holder: str, trial_lease: float = 60.0,
                 clock: Clock = time.monotonic, wall_clock: Clock = time.time,
                 fleet_clock: Clock | None = None,
                 listeners: list[Listener] | None = None) -> None:
        super().__init__(provider, policy, clock, wall_clock, listeners)
        self._link = link
        self._key = f"{prefix}breaker:{provider}"
        self.channel = f"{prefix}breakers"
        self.holder = holder
        self._trial_lease = trial_lease
        self._fleet_clock = fleet_clock  # tests only: production uses Redis' clock
        #: The newest fleet change applied here.
        self.version = 0
        #: Round versions of the fleet's trial calls this replica has in flight.
        self._trials: deque[int] = deque()
        self._in_round = False  # half-open because the fleet granted this replica a trial
        self._echo = True  # local changes go to the fleet; the fleet's own do not go back

    def _args(self, *more) -> list:
        now = "" if self._fleet_clock is None else repr(self._fleet_clock())
        return [now, self.channel, self.provider, *more]

    # -- the call path -----------------------------------------------------------------------

    async def claim(self) -> Permit | None:
        """A permit for one call now, or None; past the cool-down, a trial call is claimed
        from the fleet (one round trip, only while the provider is down)."""
        name = self._state.name
        if name == CLOSED:
            return Permit(self)
        if not self._link.up:
            return self.permit()
        if name == OPEN and self._clock() < self.probe_at:
            return None
        try:
            fleet = FleetState.from_reply(await self._link.run(
                CLAIM, [self._key], self._args(self.policy.half_open_calls,
                                               self._trial_lease)))
        except LinkDown:
            return self.permit()
        self.apply(fleet)
        if fleet.granted:
            if self.state != HALF_OPEN or not self._in_round:
                self._quietly(_HalfOpen, "cool-down over: trial call granted by the fleet")
                self._in_round = True
            self._state.in_flight += 1
            self._trials.append(fleet.version)
            return Permit(self)
        if fleet.state == CLOSED:
            # The fleet holds no open breaker (this one opened while Redis was away, or its
            # news was lost): this replica decides alone, and the next sync publishes it.
            return self.permit()
        if fleet.state == HALF_OPEN:
            self.probe_at = self._clock() + RECHECK_SECONDS  # the round's trials are out
        return None

    def record_success(self) -> None:
        if not self._fleet_round():
            return super().record_success()
        if self._trials:
            self._state.in_flight = max(0, self._state.in_flight - 1)
            self._verdict(self._trials.popleft(), "success",
                          f"{self.policy.half_open_calls} trial call(s) succeeded")
        # else: a call let through before the round: it says nothing of the trials

    def record_failure(self, reason: str) -> None:
        if not self._fleet_round():
            return super().record_failure(reason)
        self.last_failure = (reason, self._wall())
        if self._trials:
            version = self._trials.popleft()
            self._quietly(_Open, f"trial call failed: {reason}")
            self._verdict(version, "failure", f"trial call failed: {reason}")

    def record_abandoned(self) -> None:
        if not self._fleet_round():
            return super().record_abandoned()
        if self._trials:
            self._state.in_flight = max(0, self._state.in_flight - 1)
            self._verdict(self._trials.popleft(), "abandoned", "")

    def _fleet_round(self) -> bool:
        return self._in_round and self._state.name == HALF_OPEN and self._link.up

    def _verdict(self, version: int, outcome: str, reason: str) -> None:
        async def send() -> None:
            self.apply(FleetState.from_reply(await self._link.run(
                VERDICT, [self._key],
                self._args(version, outcome, self.policy.half_open_calls, self.policy.cooldown,
                           reason, self.holder))))

        self._link.spawn(send())

    # -- local changes, told to the fleet ----------------------------------------------------

    def _move(self, to: type[_State], reason: str, now: float) -> None:
        self._in_round = False
        super()._move(to, reason, now)
        if self._echo and to is _Open and self._link.up:
            self._link.spawn(self.publish_open(self.policy.cooldown, reason))

    def reset(self, reason: str = "reset by operator") -> None:
        super().reset(reason)
        if self._link.up:
            async def send() -> None:
                self.apply(FleetState.from_reply(await self._link.run(
                    RESET, [self._key], self._args(reason, self.holder))))

            self._link.spawn(send())

    async def publish_open(self, cooldown: float, reason: str) -> None:
        """Open the fleet's breaker (a no-op when it is open already), and adopt its cool-down."""
        self.apply(FleetState.from_reply(await self._link.run(
            TRIP, [self._key], self._args(cooldown, reason, self.holder))))

    # -- the fleet's changes, applied here ---------------------------------------------------

    async def sync(self) -> None:
        """Read the fleet's state; publish this replica's open breaker if the fleet lacks it."""
        fleet = FleetState.from_reply(await self._link.run(READ, [self._key], self._args()))
        if fleet.state == CLOSED and fleet.version <= self.version and self.state == OPEN:
            await self.publish_open(max(0.001, self.probe_at - self._clock()),
                                    self._last_reason or "opened while Redis was unreachable")
            return
        self.apply(fleet)

    def apply(self, fleet: FleetState) -> None:
        """Adopt a fleet change newer than any applied here (older ones are already known)."""
        if fleet.version <= self.version:
            return
        self.version = fleet.version
        by = "" if fleet.holder == self.holder else f" (from {fleet.holder})"
        if fleet.state == OPEN:
            self._trials.clear()
            self._quietly(_Open, f"{fleet.reason}{by}")
            self.probe_at = self._clock() + fleet.ms_to_probe / 1000
        elif fleet.state == CLOSED:
            self._trials.clear()
            if self.state != CLOSED:
                self._quietly(_Closed, f"{fleet.reason}{by}")
        else:
            # A new round of trials: those of an older one no longer count (they are claimed,
            # never adopted: see `permit`).
            self._trials.clear()

    def _quietly(self, to: type[_State], reason: str) -> None:
        with self._not_echoed():
            self._move(to, reason, self._clock())

    @contextlib.contextmanager
    def _not_echoed(self) -> Iterator[None]:
        self._echo = False
        try:
            yield
        finally:
            self._echo = True

    @property
    def _last_reason(self) -> str | None:
        return f"opened while Redis was unreachable, last: {self.last_failure[0]}" \
            if self.last_failure else None
