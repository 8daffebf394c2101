"""Fleet: what this gateway process shares with the other replicas through Redis, when
CIRCUIT_REDIS_URL is set — rate-limit buckets and breaker state (keys, budgets and records are
shared through the database). Built from settings; the gateway knows it only through the
`Limiter` and breaker interfaces, its readiness check and its gauges.
"""

from __future__ import annotations

from circuit.config import Settings
from circuit.gateway.control import process_holder
from circuit.metrics import gauge
from circuit.resilience.breaker import BreakerPolicy
from circuit.resilience.breaker_board import BreakerBoard
from circuit.resilience.redis_link import RedisLink
from circuit.resilience.shared_breaker import SharedBreaker
from circuit.resilience.shared_limits import SharedRateLimiter


class Fleet:
    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None
        self.prefix = settings.redis_prefix
        self.link = RedisLink(settings.redis_url, timeout=settings.redis_timeout,
                              fallback=settings.redis_fallback)
        self.limiter = SharedRateLimiter(self.link, prefix=self.prefix,
                                         fail_closed=settings.redis_fallback == "closed")
        # A trial call that has not reported by the time any request must have ended is
        # taken for lost (its replica died), and the fleet starts a new round of trials.
        self._trial_lease = settings.request_deadline + settings.breaker_cooldown
        self._holder = process_holder()
        self._breakers: dict[str, SharedBreaker] = {}
        self.board: BreakerBoard | None = None

    def breaker(self, provider: str, policy: BreakerPolicy) -> SharedBreaker:
        breaker = SharedBreaker(provider, policy, link=self.link, prefix=self.prefix,
                                holder=self._holder, trial_lease=self._trial_lease)
        self._breakers[provider] = breaker
        return breaker

    async def start(self) -> None:
        """Connect to Redis (down is not fatal: the fallback serves) and follow the breakers."""
        await self.link.start()
        self.board = BreakerBoard(self.link, self._breakers)
        await self.board.start()

    async def stop(self) -> None:
        if self.board is not None:
            await self.board.stop()
        await self.link.stop()

    def readiness(self) -> dict:
        return self.link.readiness()

    def metrics(self) -> list:
        link = self.link
        return [gauge("circuit_redis_up", "1 while Redis (shared limits and breakers) answers.",
                      1.0 if link.up else 0.0),
                gauge("circuit_redis_outages", "Times this process lost Redis.", link.outages),
                gauge("circuit_redis_local_decisions", "Rate-limit admissions decided by this "
                      "process alone because Redis was unreachable (fail-open).",
                      link.local_decisions),
                gauge("circuit_redis_refusals", "Requests refused with 503 because Redis was "
                      "unreachable (fail-closed).", link.refusals),
                gauge("circuit_redis_round_trips", "Pipelines sent to Redis (each carries every "
                      "script queued meanwhile).", link.round_trips),
                gauge("circuit_redis_scripts", "Scripts run in Redis (admissions, settlements, "
                      "breaker changes).", link.calls)]
