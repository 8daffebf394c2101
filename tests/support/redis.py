"""Redis for the tests: the shared server, under a key prefix of each test's own, and private
servers a test may kill.

The shared server is CIRCUIT_TEST_REDIS_URL (default redis://127.0.0.1:6379/9). Other test runs
(and other projects) may use it at the same time, so every test gets a fresh prefix and deletes
its keys afterwards; nothing is ever flushed. A test that must kill Redis starts a
`redis-server` of its own on a free port instead. Where no Redis answers (or no redis-server is
installed) these tests skip, saying why, unless CI is set: then they fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import redis

from tests.support.postgres import in_ci

SERVER_URL = os.environ.get("CIRCUIT_TEST_REDIS_URL",
                            "redis://127.0.0.1:6379/9")


def _skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} and CI is set", pytrace=False)
    pytest.skip(f"{reason} (set CI=true to require it)")


@cache
def _unreachable_reason() -> str | None:
    try:
        client = redis.Redis.from_url(SERVER_URL, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require_redis() -> None:
    """Skip (fail, under CI) when the shared Redis does not answer."""
    if (reason := _unreachable_reason()) is not None:
        _skip_or_fail(f"Redis not reachable at {SERVER_URL} ({reason})")


@contextlib.contextmanager
def fresh_prefix() -> Iterator[str]:
    """A key prefix no one else uses; its keys are deleted afterwards."""
    require_redis()
    prefix = f"circuit-test-{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(SERVER_URL)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A `redis-server` of this test's own (no persistence), to kill and start again on the
    same port."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _skip_or_fail("redis-server is not installed")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        log = (self.folder / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.ping()
                    return self
                except (redis.RedisError, OSError):
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {self.port} did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
