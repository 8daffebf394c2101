"""Regression guards for the hot path, by counting (never timing): no database call and no
settings parse happens on the event loop while requests are served."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

import httpx
import pytest

import circuit.config
from circuit.store.sqlite import SQLiteStore
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

#: Budget leases a run may take.
LEASES = 10

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "guard"}],
        "max_tokens": 10}


#: What the control loop's tick calls, each at most once a tick.
TICK_CALLS = {"keys_fingerprint", "load_keys", "breaker_commands_after", "save_breakers",
              "return_budget"}
#: Budget leases: one per chunk of the limit.
LEASE_CALLS = {"lease_budget", "return_budget"}
#: The retention pruner's round: on a timer (its first five seconds after start), never per
#: request; its own tests count it.
PRUNER_CALLS = {"prune_requests", "clear_content", "count_prunable", "release_space"}


def _store_method() -> str:
    """The public store method whose call reached SQLiteStore.connection."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_name.startswith("_")
                                 or frame.f_code.co_name == "connection"):
        frame = frame.f_back
    return frame.f_code.co_name if frame is not None else "?"


@pytest.fixture
def watched_gateway(tmp_path, monkeypatch):
    """A gateway whose store notes the thread and the store method of every connection use.
    Only this gateway's store: the patch is on the class, and a gateway another test of this
    process left running would be counted too (a CI run saw every tick's calls twice)."""
    calls: list[tuple[str, str]] = []
    original = SQLiteStore.connection
    server = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_DAILY_USD_LIMIT=100)

    def connection(self):
        if self is server.gateway.store:
            calls.append((threading.current_thread().name, _store_method()))
        return original(self)

    monkeypatch.setattr(SQLiteStore, "connection", connection)
    server.start()
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
    assert loop_thread not in [thread for thread, _ in calls]


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
    # Besides the record writer, the store is touched only by the control loop (each of its
    # calls at most once a tick), by budget leases (one per chunk of the limit) and by the
    # pruner's timer: counted per method against the ticks, so a slow machine's longer run is
    # no failure, and a failure names the method.
    methods = Counter(method for thread, method in calls[before:]
                      if thread != "circuit-record-writer" and method not in PRUNER_CALLS)
    unexpected = {m: n for m, n in methods.items() if m not in TICK_CALLS | LEASE_CALLS}
    assert unexpected == {}, "the store was called for something besides ticks and leases"
    for method, count in methods.items():
        bound = (ticks if method in TICK_CALLS else 0) + (LEASES if method in LEASE_CALLS else 0)
        assert count <= bound, f"{method} called {count} times in {ticks} ticks"
    assert sum(methods.values()) < 300, "not once per request"


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
