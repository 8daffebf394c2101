"""Gateway: the long-lived parts of one gateway process, built from settings, started and
stopped with the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from circuit.accounting.budget import BudgetLedger
from circuit.accounting.meter import Meter
from circuit.config import Settings
from circuit.gateway.auth import ClientKey, KeyRing
from circuit.gateway.control import ControlLoop
from circuit.gateway.dispatch import Dispatcher
from circuit.gateway.fleet import Fleet
from circuit.gateway.routing import Router
from circuit.gateway.validation import validate
from circuit.logs import RequestLog
from circuit.metrics import BREAKER_STATES, GatewayMetrics, gauge
from circuit.money import micros
from circuit.providers.registry import build_provider
from circuit.resilience.breaker import BreakerPolicy, CircuitBreaker
from circuit.resilience.rate_limit import Limiter, Limits, RateLimiter
from circuit.store.base import Store
from circuit.store.journal import RecordJournal
from circuit.store.retention import Pruner
from circuit.store.select import journal_directory
from circuit.store.select import open_store as select_store
from circuit.store.writer import RecordWriter
from circuit.wire import Usage

log = logging.getLogger("circuit.gateway")

#: Seconds shutdown gives the control loop to return leases and save breakers.
CONTROL_STOP_TIMEOUT = 5.0


def open_store(settings: Settings) -> Store:
    """The store the settings name: PostgreSQL or SQLite (see circuit/store/select.py)."""
    return select_store(settings)


class Gateway:
    """Everything a request needs, built whole from the settings; `start()` opens what needs
    the event loop (upstream pools, the control loop, the record writer), `stop()` closes it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Validated before anything opens, so a bad configuration stops start-up at once.
        plan = validate(settings)
        self.prices, self.specs, self.routes = plan.prices, plan.specs, plan.routes
        self.store = open_store(settings)
        self.keys = KeyRing()
        self.metrics = GatewayMetrics(
            lambda model: model in self.routes or self.prices.lookup(model) is not None)
        self.metrics.add_live(self._live_metrics)
        self.meter = Meter(self.prices, counted=self._counted)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.journal = RecordJournal(journal_directory(settings), settings.journal_reserve_bytes)
        self.writer = RecordWriter(
            self.store.insert_requests, journal=self.journal,
            write_again=lambda records: self.store.insert_requests(records, again=True),
            replay=lambda: self.journal.replay(self.store.insert_replayed,
                                               self.store.journal_offset),
            before=[self.meter.settle_local_counts],
            after=[RequestLog(settings.log_level, settings.log_format), self.metrics.observe])
        #: Requests being handled, and streams being relayed, right now.
        self.in_flight = 0
        self.open_streams = 0
        #: Rate limits and breakers shared with the other replicas through Redis, if set.
        self.fleet = Fleet(settings) if settings.redis_url else None
        if self.fleet is not None:
            self.metrics.add_live(self.fleet.metrics)
        self.limiter: Limiter = self.fleet.limiter if self.fleet is not None else RateLimiter()
        self.ledger = BudgetLedger(self.store)
        self.breaker_policy = BreakerPolicy(
            window=settings.breaker_window, minimum_calls=settings.breaker_minimum_calls,
            failure_rate=settings.breaker_failure_rate,
            consecutive_failures=settings.breaker_consecutive_failures,
            cooldown=settings.breaker_cooldown, half_open_calls=settings.breaker_half_open_calls)
        # Declared providers, and implicit ones only when something routes to them (an unused
        # mock would load the tokenizers for nothing). Built here, started in start().
        used = {settings.provider, *settings.providers,
                *(provider for targets in self.routes.values() for provider, _ in targets)}
        providers = {name: build_provider(spec, lambda: self.meter.counter)
                     for name, spec in self.specs.items() if name in used}
        self.router = Router(providers, settings.provider, self.routes,
                             frozenset(name for name, spec in self.specs.items() if spec.free))
        make_breaker = self.fleet.breaker if self.fleet is not None else CircuitBreaker
        self.breakers = {name: make_breaker(name, self.breaker_policy) for name in providers}
        self.dispatcher = Dispatcher(self.breakers,
                                     {name: spec.retry for name, spec in self.specs.items()})
        self.control = ControlLoop(self.store, self.keys, settings.api_keys, self.breakers,
                                   self.ledger)
        self.pruner = Pruner(self.store, settings.retention_days,
                             settings.content_retention_days, settings.prune_interval)

    def limits(self, key: ClientKey) -> Limits:
        """The rate limits that apply to a key: its own, else the configured defaults."""
        return Limits(rpm=key.rpm if key.rpm is not None else self.settings.default_rpm,
                      tpm=key.tpm if key.tpm is not None else self.settings.default_tpm)

    def daily_limit_micros(self, key: ClientKey) -> int | None:
        """The key's daily budget in micro-dollars: its own, else the default; None: no limit
        (none configured, or the key exempted)."""
        usd = key.daily_limit_usd if key.daily_limit_usd is not None \
            else self.settings.daily_usd_limit
        # A negative limit (keys.NO_DAILY_LIMIT) exempts the key from the default one.
        return None if usd is None or usd < 0 else micros(usd)

    def _counted(self, grants: Any, usage: Usage, cost: int | None) -> None:
        """The writer thread counted a request's tokens: settle its grants on the loop."""
        if grants is None or self._loop is None:
            return
        # A loop already closed (shutdown) has nothing left to settle.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(grants.settle, self,
                                            usage.input_tokens + usage.output_tokens, cost)

    def _live_metrics(self) -> list:
        live = [gauge("circuit_in_flight_requests", "Requests being handled.", self.in_flight),
                gauge("circuit_open_streams", "Streams being relayed.", self.open_streams),
                gauge("circuit_record_queue_depth", "Request records waiting for the writer.",
                      self.writer.pending),
                gauge("circuit_dropped_records", "Request records never written (must be 0).",
                      self.writer.dropped),
                gauge("circuit_record_write_failures", "Failed (and retried) batch writes.",
                      self.writer.failed_writes),
                gauge("circuit_records_journaled", "Request records spilled to the journal "
                      "while the database could not take them.", self.writer.spilled),
                gauge("circuit_records_replayed", "Journaled request records replayed into "
                      "the database.", self.writer.replayed)]
        states = GaugeMetricFamily("circuit_breaker_state",
                                   "1 for each provider's current breaker state.",
                                   labels=["provider", "state"])
        for name, breaker in self.breakers.items():
            for state in BREAKER_STATES:
                states.add_metric([name, state], 1.0 if breaker.state == state else 0.0)
        return [*live, states]

    async def start(self) -> None:
        """Migrate, load keys (off the loop), start providers, the control loop and the writer."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.store.migrate)
        for provider in self.router.providers.values():
            await provider.start()
        if self.fleet is not None:
            await self.fleet.start()
        await self.control.start()
        if not len(self.keys):
            log.warning("no API keys: every request will get 401; create one with "
                        "`circuit keys add NAME` or set CIRCUIT_API_KEYS")
        self.writer.start()
        await self.pruner.start()

    async def stop(self) -> None:
        """Stop taking work, close upstream pools, return leases, drain the writer.

        Every step runs whatever the others did: a database that cannot be written (which
        fails saving breaker state and returning leases) must not keep the writer from
        draining its records into the journal."""
        # Returning leases and saving breakers wait on the database: bounded, since what cannot
        # be returned is only lost for the day, never overspent.
        steps = [("the control loop",
                  lambda: asyncio.wait_for(self.control.stop(), CONTROL_STOP_TIMEOUT))]
        if self.fleet is not None:
            steps.append(("the Redis link", self.fleet.stop))
        steps += [(f"provider {name}", provider.aclose)
                  for name, provider in self.router.providers.items()]
        steps += [("the pruner", self.pruner.stop),
                  ("the record writer", lambda: asyncio.to_thread(self.writer.stop)),
                  # The writer's local counts (streams the shutdown cut, answers without
                  # usage) settled their reservations as it drained, after the control loop
                  # had returned the leases: what they released goes back too, or it would be
                  # held until the day ends.
                  ("the leases settled last", lambda: asyncio.wait_for(
                      self.ledger.return_all(), CONTROL_STOP_TIMEOUT)),
                  ("the store", lambda: asyncio.to_thread(self.store.close))]
        for what, step in steps:
            try:
                await step()
            except Exception:
                log.exception("stopping %s failed; shutdown goes on", what)
