"""Regression guards for the hot path, by counting (never timing): no database call and no
settings parse happens on the event loop while requests are served."""

from __future__ import annotations

import threading

import httpx
import pytest

import circuit.config
from circuit.store.sqlite import SQLiteStore
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "guard"}],
        "max_tokens": 10}


@pytest.fixture
def watched_gateway(tmp_path, monkeypatch):
    """A gateway whose store notes the thread of every connection use."""
    calls: list[str] = []
    original = SQLiteStore.connection

    def connection(self):
        calls.append(threading.current_thread().name)
        return original(self)

    monkeypatch.setattr(SQLiteStore, "connection", connection)
    server = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_DAILY_USD_LIMIT=100).start()
    yield server, calls
    server.stop()


def _serve(server, n: int) -> None:
    with httpx.Client(headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as client:
        for i in range(n):
            body = {**BODY, "stream": bool(i % 2)}
            assert client.post(server.url + "/v1/chat/completions", json=body).status_code == 200


def test_no_database_call_happens_on_the_event_loop_thread(watched_gateway):
    server, calls = watched_gateway
    _serve(server, 200)
    server.records(expect=200)
    loop_thread = server._thread.name  # uvicorn runs the event loop on this thread
    assert calls, "the store was used (off the loop)"
    assert loop_thread not in calls


def test_requests_neither_reload_settings_nor_touch_the_database_per_request(watched_gateway,
                                                                            monkeypatch):
    server, calls = watched_gateway
    loads = []
    monkeypatch.setattr(circuit.config, "load_settings", lambda *a, **k: loads.append(1))
    _serve(server, 20)  # warm: the first budget lease is taken here
    server.records(expect=20)
    before = len(calls)
    _serve(server, 300)
    server.records(expect=320)
    assert loads == []
    # Besides the record writer, the store is touched only by the control loop (a few calls
    # per half second) and by budget leases (one per chunk of the limit): not per request.
    others = [name for name in calls[before:] if name != "circuit-record-writer"]
    assert len(others) < 30
