"""The `circuit` command run in-process with Typer's CliRunner, against a database of its own.

Each test gets a fresh folder as its working directory (so no stray circuit.toml or .env is
read), an environment without any Circuit setting, and CIRCUIT_DB_PATH inside that folder.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from circuit.cli.app import app
from circuit.config import declared_settings
from circuit.store.records import RequestRecord
from circuit.store.reports import timestamp_text
from circuit.store.sqlite import SQLiteStore

ANSI_ESCAPE = "\x1b["


def today_at(hour: int, minute: int = 0) -> str:
    now = datetime.now(UTC)
    return timestamp_text(now.replace(hour=hour, minute=minute, second=0, microsecond=0))


def days_ago(days: int, hour: int = 12) -> str:
    moment = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return timestamp_text(moment - timedelta(days=days))


def record(request_id: str, **fields: Any) -> RequestRecord:
    """A request record with sensible defaults: ok, today just after midnight UTC."""
    base = RequestRecord(request_id=request_id, timestamp=today_at(0, 1), key_name="alice",
                         provider="mock", model="gpt-4o-mini", upstream_model="gpt-4o-mini",
                         status="ok", status_code=200, tokens_input=10, tokens_output=5,
                         cost_micros=1000, latency_ms=100.0, attempts=1)
    return replace(base, **fields)


class Cli:
    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.db_path = folder / "circuit.db"
        for f in declared_settings():
            monkeypatch.delenv(f.metadata["env"], raising=False)
        for name in ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "TTY_COMPATIBLE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CIRCUIT_DB_PATH", str(self.db_path))
        monkeypatch.chdir(folder)
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int | None = 0) -> Any:
        """Run `circuit ARGS`; check the exit code unless `code` is None."""
        result = self.runner.invoke(app, list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if code is not None:
            assert result.exit_code == code, (
                f"exit {result.exit_code}, wanted {code}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}")
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)

    def store(self) -> SQLiteStore:
        store = SQLiteStore(self.db_path)
        store.migrate()
        return store

    def seed(self, *records: RequestRecord) -> None:
        store = self.store()
        try:
            store.insert_requests(records)
        finally:
            store.close()

    def add_key(self, name: str, *args: str) -> str:
        return self.json("keys", "add", name, *args)["key"]


def one_line_error(result: Any) -> str:
    """The whole of stderr, checked to be one `error: ...` line without a traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]
