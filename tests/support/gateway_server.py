"""The real gateway app, served by uvicorn on a free 127.0.0.1 port from a background thread,
with the HTTP protocol `circuit serve` runs."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import openai
import sqlite_utils
import uvicorn

from circuit.config import load_settings
from circuit.gateway.app import create_app
from circuit.gateway.http_protocol import BoundedHttpToolsProtocol

CLIENT_KEY = "sk-test-client-key-0123456789"


class GatewayServer:
    """A running gateway with its own database; `records()` reads what it wrote."""

    def __init__(self, tmp: Path, *, protocol: Any = BoundedHttpToolsProtocol, **env: Any) -> None:
        """`protocol`: uvicorn's `http` (\"httptools\": plain uvicorn, as the README's
        `uvicorn circuit.main:app` runs the app)."""
        self.db_path = tmp / "circuit.db"
        environ = {"CIRCUIT_DB_PATH": str(self.db_path), "CIRCUIT_API_KEYS": CLIENT_KEY,
                   "CIRCUIT_LOG_LEVEL": "warning",
                   **{k: str(v) for k, v in env.items()}}
        self.settings = load_settings(environ=environ, cwd=tmp)
        self.app = create_app(self.settings)
        self.gateway = self.app.state.gateway
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                loop="uvloop", http=protocol, lifespan="on",
                                timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> GatewayServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._sock.close()

    def client(self, key: str = CLIENT_KEY, **kwargs: Any) -> openai.OpenAI:
        """The official OpenAI SDK, pointed at this gateway."""
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 15)
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, **kwargs)

    def records(self, request_id: str | None = None, *, expect: int = 1,
                timeout: float = 5.0) -> list[dict]:
        """Rows of `requests` (for one request id), waiting for the writer to catch up."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self._read(request_id)
            if len(rows) >= expect or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)

    def record(self, request_id: str) -> dict:
        rows = self.records(request_id)
        assert len(rows) == 1, f"expected one record for {request_id}, found {len(rows)}"
        return rows[0]

    def _read(self, request_id: str | None) -> list[dict]:
        if not self.db_path.exists():
            return []
        db = sqlite_utils.Database(self.db_path)
        try:
            if not db["requests"].exists():
                return []
            if request_id is None:
                return list(db["requests"].rows_where(order_by="id"))
            return list(db["requests"].rows_where("request_id = ?", [request_id],
                                                  order_by="id"))
        finally:
            db.close()
