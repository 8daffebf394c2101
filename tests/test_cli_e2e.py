"""End to end: `circuit serve` as a real process, operated from the CLI while it runs.

The gateway bootstraps its own `default` key (CIRCUIT_API_KEYS unset); the CLI adds, reports on
and revokes another key in the same database, and the official OpenAI SDK sees each change
without a restart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from circuit.config import declared_settings
from tests.support.cli import Cli

CIRCUIT = str(Path(sys.executable).parent / "circuit")
MESSAGES = [{"role": "user", "content": "Hello from the CLI test"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def eventually(attempt: Callable[[], Any], *, within: float, every: float = 0.05) -> Any:
    """Call `attempt` until it returns without raising AssertionError or an OpenAI error."""
    deadline = time.monotonic() + within
    while True:
        try:
            return attempt()
        except (AssertionError, openai.OpenAIError):
            if time.monotonic() > deadline:
                raise
        time.sleep(every)


class ServedGateway:
    def __init__(self, folder: Path, db_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items()
               if k not in {f.metadata["env"] for f in declared_settings()}}
        env.update(CIRCUIT_DB_PATH=str(db_path), PROVIDER="mock", CIRCUIT_LOG_LEVEL="warning")
        self.process = subprocess.Popen([CIRCUIT, "serve", "--port", str(self.port)], env=env,
                                        cwd=folder, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.process.stdout.read()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("gateway did not become ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=10)


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Cli:
    return Cli(tmp_path, monkeypatch)


@pytest.fixture
def gateway(cli) -> Iterator[ServedGateway]:
    served = ServedGateway(cli.folder, cli.db_path)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


def test_a_key_added_from_the_cli_works_at_once_is_reported_and_revoking_it_locks_it_out(
        cli, gateway):
    secret = cli.add_key("e2e", "--daily-limit", "1")
    client = gateway.client(secret)

    # Picked up on the gateway's next control tick (0.5 s; counted in
    # test_gateway_protection): the bound here is only there so a broken gateway fails.
    completion = eventually(lambda: client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES), within=10.0)
    assert completion.usage.total_tokens > 0

    def reported() -> dict:
        data = cli.json("usage", "--today", "--key", "e2e")
        assert data["total"]["requests"] == 1
        return data

    total = eventually(reported, within=10.0)["total"]
    assert total["cost_usd"] > 0 and total["tokens_out"] == completion.usage.completion_tokens
    assert total["failed"] == total["rejected"] == 0

    cli("keys", "revoke", "e2e")

    def refused() -> None:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        except openai.AuthenticationError:
            return
        raise AssertionError("the revoked key is still accepted")

    eventually(refused, within=10.0)
    default_key = [k for k in cli.json("keys", "list")["keys"] if k["name"] == "default"]
    assert default_key and default_key[0]["active"], "the gateway bootstrapped its own key"


def test_a_request_with_a_revoked_key_is_recorded_and_tailed_under_the_key_name(cli, gateway):
    secret = cli.add_key("leaver")
    cli("keys", "revoke", "leaver")
    client = gateway.client(secret)

    def refused_as_revoked() -> None:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        except openai.AuthenticationError as error:
            assert error.code == "revoked_api_key"
            return
        raise AssertionError("the revoked key was accepted")

    eventually(refused_as_revoked, within=3.0)

    def tailed() -> dict:
        lines = cli("requests", "tail", "--no-follow", "--json").stdout.splitlines()
        refused = [json.loads(line) for line in lines
                   if json.loads(line)["error_code"] == "revoked_api_key"]
        assert refused
        return refused[-1]

    assert eventually(tailed, within=3.0)["key_name"] == "leaver"
    line = cli("requests", "tail", "--no-follow").stdout.splitlines()[-1]
    assert "leaver" in line and "rejected" in line
