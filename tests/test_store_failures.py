"""A database that cannot answer on the request path: a clear 503, bounded in time, and the
request's record still written once the database is back."""

from __future__ import annotations

import sqlite3

import httpx

from tests.support.gateway_server import CLIENT_KEY, GatewayServer

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5}


def test_a_locked_database_answers_503_store_unavailable_not_a_stall(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock").start()
    lock = sqlite3.connect(server.db_path, timeout=1, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        response = httpx.post(server.url + "/v1/chat/completions", json=BODY, timeout=60,
                              headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        # Not a 500 internal_error once SQLite's 10 s busy timeout runs out: the lease gives
        # up after 3 s with a reason the client can act on.
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "store_unavailable" and "database" in error["message"]
        assert response.headers["retry-after"] == "1"
        lock.execute("ROLLBACK")
        row = server.record(response.headers["x-request-id"])
        assert (row["status_code"], row["error_code"]) == (503, "store_unavailable")
        later = httpx.post(server.url + "/v1/chat/completions", json=BODY, timeout=60,
                           headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        assert later.status_code == 200, "served again once the lock is gone"
    finally:
        lock.close()
        server.stop()
