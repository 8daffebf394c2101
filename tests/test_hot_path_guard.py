"""Regression guards for the hot path, by counting (never timing): no database call and no
settings parse happens on the event loop while requests are served."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

import circuit.config
from circuit.store.sqlite import SQLiteStore
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

#: Store calls of one control-loop tick at most, and budget leases a run may take.
CALLS_PER_TICK = 5
LEASES = 10

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
    control = server.gateway.control
    before, ticks_before = len(calls), control.ticks
    _serve(server, 300)
    server.records(expect=320)
    ticks = control.ticks - ticks_before + 1  # the tick under way counts too
    assert loads == []
    # Besides the record writer, the store is touched only by the control loop (at most five
    # calls a tick: keys, commands, breakers, idle leases) and by budget leases (one per chunk
    # of the limit): counted against the ticks, so a slow machine's longer run is no failure.
    others = [name for name in calls[before:] if name != "circuit-record-writer"]
    assert len(others) <= CALLS_PER_TICK * ticks + LEASES
    assert len(others) < 300, "not once per request"


def test_an_exact_prompt_count_for_a_small_tpm_limit_loads_the_tokenizer_off_the_loop(
        tmp_path, upstream):
    from circuit.keys import create_key

    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_API_KEY="sk-upstream-test",
                           OPENAI_BASE_URL=upstream.base_url).start()
    try:
        meter = server.gateway.meter
        assert meter._counter is None
        loaded_on = []
        load = meter._load_counter
        meter._load_counter = lambda: loaded_on.append(threading.current_thread().name) or load()
        store = SQLiteStore(server.db_path)
        secret = create_key(store, "small-tpm", tpm=50)
        store.close()
        body = {"model": "gpt-4o-mini", "max_tokens": 5,
                "messages": [{"role": "user", "content": "hello " * 20}]}  # bound > 50 > exact
        deadline = time.monotonic() + 3
        while True:
            response = httpx.post(server.url + "/v1/chat/completions", json=body,
                                  headers={"Authorization": f"Bearer {secret}"})
            if response.status_code != 401 or time.monotonic() > deadline:
                break
        assert response.status_code == 200, response.text
        assert loaded_on and server._thread.name not in loaded_on
    finally:
        server.stop()
