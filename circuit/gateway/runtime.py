"""Gateway: the long-lived parts of one gateway process, built from settings, started and
stopped with the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from circuit.accounting.meter import Meter
from circuit.accounting.pricing import PriceTable
from circuit.accounting.tokens import TokenCounter
from circuit.config import ConfigError, Settings
from circuit.gateway.auth import KeyRing
from circuit.gateway.routing import Router
from circuit.logs import log_requests
from circuit.providers.base import Provider, Timeouts
from circuit.providers.mock import MockProvider
from circuit.providers.openai import OpenAIProvider
from circuit.store.base import Store
from circuit.store.sqlite import SQLiteStore
from circuit.store.writer import RecordWriter

log = logging.getLogger("circuit.gateway")

#: How often the key ring checks the keys table for changes made elsewhere (the CLI).
KEYS_REFRESH_SECONDS = 0.5


def open_store(settings: Settings) -> Store:
    """The store the settings name."""
    return SQLiteStore(settings.db_path)


def build_price_table(settings: Settings) -> PriceTable:
    try:
        return PriceTable.default(settings.prices)
    except ValueError as exc:
        raise ConfigError(f"[prices] {exc}") from None


class Gateway:
    """Everything a request needs, alive between `start()` and `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prices = build_price_table(settings)
        self.store = open_store(settings)
        self.keys = KeyRing()
        self.writer = RecordWriter(self.store.insert_requests, after=[log_requests])
        self.timeouts = Timeouts(settings.connect_timeout, settings.first_byte_timeout,
                                 settings.idle_timeout)
        self.counter: TokenCounter | None = None
        self.meter: Meter | None = None
        self.router: Router | None = None
        self._keys_fingerprint: str | None = None
        self._refresher: asyncio.Task | None = None

    def _build_provider(self, counter: TokenCounter) -> Provider:
        if self.settings.provider == "mock":
            return MockProvider(counter)
        return OpenAIProvider("openai", self.settings.openai_base_url,
                              self.settings.openai_api_key, self.timeouts)

    async def start(self) -> None:
        """Migrate, load keys and tokenizers (off the loop), start the writer and providers."""
        await asyncio.to_thread(self.store.migrate)
        self.counter = await asyncio.to_thread(TokenCounter.load)
        self.meter = Meter(self.counter, self.prices)
        await self.refresh_keys()
        if not len(self.keys):
            log.warning("no API keys: every request will get 401; create one with "
                        "`circuit keys add NAME` or set CIRCUIT_API_KEYS")
        self.writer.start()
        provider = self._build_provider(self.counter)
        await provider.start()
        self.router = Router(provider)
        self._refresher = asyncio.create_task(self._refresh_keys_forever(),
                                              name="circuit-keys-refresh")

    async def stop(self) -> None:
        """Stop taking work, close upstream pools, drain the writer."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self.router is not None:
            for provider in self.router.providers.values():
                await provider.aclose()
        await asyncio.to_thread(self.writer.stop)
        await asyncio.to_thread(self.store.close)

    async def refresh_keys(self) -> None:
        """Reload the key ring if the keys table changed since the last look."""
        fingerprint = await asyncio.to_thread(self.store.keys_fingerprint)
        if fingerprint == self._keys_fingerprint:
            return
        rows = await asyncio.to_thread(self.store.load_keys)
        self.keys.load(self.settings.api_keys, rows)
        self._keys_fingerprint = fingerprint

    async def _refresh_keys_forever(self) -> None:
        while True:
            await asyncio.sleep(KEYS_REFRESH_SECONDS)
            try:
                await self.refresh_keys()
            except Exception:
                log.exception("reloading keys failed; keeping the current ones")
