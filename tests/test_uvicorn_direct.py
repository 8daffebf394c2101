"""`uvicorn circuit.main:app`, run as the first README told people to: the promised `.env`
works, and a configuration error never leaves a supervisor serving nothing.

Exactly as written there: this `.env` in an empty folder, `uvicorn circuit.main:app --reload
--port …`, two curl calls (JSON, and `-N` streaming), then the sqlite3 query, word for word.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.reliability.support import BIN, clean_environment, free_port, sse_data

PROMISED_DOTENV = "PROVIDER=MOCK\nCIRCUIT_API_KEYS=test-key\nCIRCUIT_DAILY_USD_LIMIT=10.0\n"
QUERY = ("SELECT request_id, status_code, tokens_input, tokens_output, cost_usd FROM requests "
         "ORDER BY timestamp DESC LIMIT 10;")
CHAT_JSON = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'
CHAT_STREAM = ('{"model": "gpt-4o-mini", "stream": true, '
               '"messages": [{"role": "user", "content": "Hello"}]}')


def _uvicorn(folder: Path, *args: str, nohup: bool = False) -> subprocess.Popen:
    # PATH leads to this environment's uvicorn, as an activated virtualenv would.
    env = clean_environment(PATH=f"{BIN}:{clean_environment().get('PATH', '')}")
    # nohup: started as `nohup` starts it (and some CI runners their jobs), SIGHUP ignored.
    ignore_hangups = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None
    return subprocess.Popen(["uvicorn", "circuit.main:app", *args], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, preexec_fn=ignore_hangups)


def _stop(process: subprocess.Popen) -> tuple[str, str]:
    if process.poll() is None:
        process.terminate()
    try:
        return process.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate(timeout=10)


def _query(cwd: Path, db: str, sql: str) -> list[tuple]:
    """`sqlite3 DB SQL` as a reader would type it (Python's sqlite3 without the command)."""
    if shutil.which("sqlite3"):
        out = subprocess.run(["sqlite3", db, sql], cwd=cwd, capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return [tuple(line.split("|")) for line in out.splitlines()]
    with contextlib.closing(sqlite3.connect(cwd / db)) as conn:
        return conn.execute(sql).fetchall()


def _curl(*args: str) -> str:
    return subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True,
                          text=True, timeout=30, check=True).stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
def test_the_promised_dotenv_serves_json_and_streams_and_records_both(tmp_path):
    (tmp_path / ".env").write_text(PROMISED_DOTENV)
    port = free_port()
    process = _uvicorn(tmp_path, "--reload", "--port", str(port))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, _stop(process)
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the gateway never answered"
            time.sleep(0.1)
        url = f"http://localhost:{port}/v1/chat/completions"
        headers = ["-H", "Authorization: Bearer test-key", "-H", "Content-Type: application/json"]
        answer = orjson.loads(_curl(url, *headers, "-d", CHAT_JSON))
        streamed = sse_data(_curl("-N", url, *headers, "-d", CHAT_STREAM))
        assert answer["choices"][0]["message"]["content"]
        assert streamed[-1] == "[DONE]" and len(streamed) > 2
        deadline = time.monotonic() + 10
        while True:
            rows = _query(tmp_path, "data/circuit.db", QUERY)
            if len(rows) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        _stop(process)
    assert len(rows) == 2
    for _request_id, status_code, tokens_in, tokens_out, cost_usd in rows:
        assert int(status_code) == 200 and int(tokens_in) > 0 and int(tokens_out) > 0
        assert float(cost_usd) > 0


@pytest.mark.parametrize("nohup", [False, True], ids=["plain", "under-nohup"])
def test_a_configuration_error_under_reload_ends_the_reloader_with_a_non_zero_exit(tmp_path,
                                                                                  nohup):
    (tmp_path / ".env").write_text("PROVIDER=bogus\n")
    process = _uvicorn(tmp_path, "--reload", "--port", str(free_port()), nohup=nohup)
    try:
        # communicate, not wait: the pipes are drained while the reloader and its child start
        # (two Python start-ups, which take tens of seconds on a machine busy enough).
        _out, err = process.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        _out, err = _stop(process)
        raise AssertionError(f"the reloader did not stop on its own; stderr:\n{err}") from None
    assert process.returncode != 0
    assert "circuit: configuration error: PROVIDER must be one of" in err
    assert "Traceback" not in err


def test_a_configuration_error_under_workers_stops_uvicorn_instead_of_restarting(tmp_path):
    (tmp_path / ".env").write_text("PROVIDER=bogus\n")
    process = _uvicorn(tmp_path, "--workers", "2", "--port", str(free_port()))
    try:
        process.wait(60)
    finally:
        _out, err = _stop(process)
    assert err.count("circuit: configuration error") == 2, "each worker once, none restarted"


def test_a_configuration_error_without_a_supervisor_exits_2(tmp_path):
    (tmp_path / ".env").write_text("PROVIDER=bogus\n")
    process = _uvicorn(tmp_path, "--port", str(free_port()))
    try:
        status = process.wait(60)
    finally:
        _out, err = _stop(process)
    assert status == 2
    assert err.strip().splitlines() == [
        "circuit: configuration error: PROVIDER must be one of anthropic, mock, openai, "
        "got 'bogus'"]
