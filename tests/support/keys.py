"""Keys made in a running gateway's store, returned once the gateway has picked them up."""

from __future__ import annotations

import time

import httpx

from circuit.keys import create_key
from circuit.store.sqlite import SQLiteStore
from tests.support.gateway_server import GatewayServer


def live_key(gateway: GatewayServer, name: str, **limits: float | int | None) -> str:
    """A new key's secret (limits: daily_limit_usd, rpm, tpm), usable at once."""
    store = SQLiteStore(gateway.db_path)
    try:
        secret = create_key(store, name, **limits)
    finally:
        store.close()
    # The gateway picks the key up within a second; probed without spending (the model list
    # is a 401 until the key is live).
    for _ in range(100):
        probe = httpx.get(gateway.url + "/v1/models",
                          headers={"Authorization": f"Bearer {secret}"}, timeout=10)
        if probe.status_code == 200:
            return secret
        time.sleep(0.05)
    raise AssertionError("key not picked up")
