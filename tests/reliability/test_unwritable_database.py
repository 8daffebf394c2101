"""SIGTERM while the database cannot be written: every answered request keeps exactly one row.

The red-team pass saw 100 of 100 answered requests lost, and exit 0, when another process held
SQLite's write lock at shutdown (saving breaker state failed and aborted the drain). Here a real
`circuit serve` answers while the database is locked, or while its disk is full, gets SIGTERM,
and is started again once the database can be written: each request it answered has its row.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.support import CHAT, GatewayProcess, auth, chat_body, wait_for_rows

REQUESTS = 100


def _answer(gateway: GatewayProcess, prefix: str) -> list[str]:
    ids = []
    with httpx.Client(timeout=30) as client:
        for i in range(REQUESTS):
            request_id = f"{prefix}-{i:04d}"
            response = client.post(gateway.url + CHAT, json=chat_body(stream=bool(i % 2)),
                                    headers=auth(request_id=request_id))
            assert response.status_code == 200, response.text
            ids.append(request_id)
    return ids


def _one_row_each(gateway: GatewayProcess, ids: list[str]) -> None:
    by_id = wait_for_rows(gateway.db_path, ids, columns="request_id", timeout=30)
    assert {i: len(by_id.get(i, [])) for i in ids} == dict.fromkeys(ids, 1)


def _journal_lines(folder: Path) -> int:
    journal = folder / "circuit.journal"
    return sum(p.read_bytes().count(b"\n") for p in journal.glob("*.jsonl")) \
        if journal.is_dir() else 0


def test_sigterm_with_the_database_locked_journals_every_answered_request(tmp_path):
    gateway = GatewayProcess(tmp_path, PROVIDER="mock", CIRCUIT_LOG_LEVEL="info").wait_ready()
    _answer(gateway, "warm")  # the budget lease is taken while the database can be written
    lock = sqlite3.connect(gateway.db_path, timeout=5, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock, for minutes
        ids = _answer(gateway, "locked")
        assert gateway.terminate(timeout=90) == 0, gateway.stderr()
        assert _journal_lines(tmp_path) >= REQUESTS
        assert "journaled" in gateway.stderr()
    finally:
        gateway.kill()  # a failure before SIGTERM must not leave it running past the test
        lock.execute("ROLLBACK")
        lock.close()
    again = GatewayProcess(tmp_path, PROVIDER="mock").wait_ready()
    try:
        _one_row_each(again, ids)
        assert _journal_lines(tmp_path) == 0, "the journal is emptied once replayed"
    finally:
        again.terminate()


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `folder` (root only)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (a disk that can fill up)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    # Unbuffered: a buffered file that met ENOSPC raises it again when closed, with the bytes
    # it still holds (seen when the gateway wrote in the same moment).
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
    return filler


def test_disk_full_then_sigterm_then_space_then_restart_keeps_every_row(tmp_path):
    with small_disk(tmp_path / "disk", "6m") as disk:
        settings = dict(PROVIDER="mock", CIRCUIT_LOG_LEVEL="info",
                        CIRCUIT_JOURNAL_RESERVE_BYTES=1024 * 1024)
        gateway = GatewayProcess(disk, **settings).wait_ready()
        try:  # a failure before SIGTERM must not leave the gateway running past the test
            _answer(gateway, "warm")
            filler = _fill(disk)
            ids = _answer(gateway, "full")
            assert gateway.terminate(timeout=90) == 0, gateway.stderr()
        finally:
            gateway.kill()
        assert _journal_lines(disk) >= REQUESTS, gateway.stderr()
        filler.unlink()  # space again
        again = GatewayProcess(disk, **settings).wait_ready()
        try:
            _one_row_each(again, ids)
        finally:
            again.terminate()


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` remounted read-only in place (root only): not even root can write there."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to remount a folder read-only")
    for command in (["mount", "--bind", str(folder), str(folder)],
                    ["mount", "-o", "remount,ro,bind", str(folder)]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
            pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_serve_on_a_read_only_database_is_one_line_and_exit_2(tmp_path):
    from tests.reliability.support import BIN, clean_environment

    data = tmp_path / "data"
    data.mkdir()
    env = clean_environment(CIRCUIT_DB_PATH=data / "circuit.db")
    subprocess.run([str(BIN / "circuit"), "keys", "add", "seed"], env=env, cwd=tmp_path,
                   capture_output=True, check=True, timeout=60)
    with read_only(data):
        done = subprocess.run([str(BIN / "circuit"), "serve", "--port", "0"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database"), done.stderr
    assert "Traceback" not in done.stderr and "Circuit on" not in done.stdout
