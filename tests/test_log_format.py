"""Every log line carries its time in one format: ISO-8601 UTC with milliseconds, the format
of the per-request line and of the records (`2026-12-01T22:46:47.123Z`)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
import time

import httpx
import orjson

from circuit.logs import RequestLog, TextFormatter
from circuit.store.records import RequestRecord
from tests.reliability.support import BIN, clean_environment, free_port

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def test_an_ordinary_line_starts_with_the_iso_time():
    record = logging.LogRecord("circuit.gateway", logging.WARNING, __file__, 1, "hello", (),
                               None)
    line = TextFormatter().format(record)
    assert ISO.match(line) and line.endswith("WARNING circuit.gateway hello")


def test_the_request_line_starts_with_the_same_iso_time():
    stream = io.StringIO()
    RequestLog(stream=stream)([RequestRecord(request_id="r1", timestamp="x", status="ok")])
    assert ISO.match(stream.getvalue())


def test_a_served_gateway_writes_every_line_with_the_iso_time(tmp_path):
    """uvicorn run directly, with no key anywhere (a warning line) and one request (its line)."""
    port = free_port()
    env = clean_environment(CIRCUIT_DB_PATH=tmp_path / "circuit.db", CIRCUIT_LOG_LEVEL="info")
    with open(tmp_path / "stderr", "wb") as err:
        process = subprocess.Popen(
            [str(BIN / "uvicorn"), "circuit.main:app", "--port", str(port), "--log-level",
             "warning"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={},
                              timeout=2).status_code == 401:
                    break
            time.sleep(0.05)
        # The request line is written by the writer thread; its own wait, so a slow start on
        # a busy machine does not eat it (a CI run saw it missing at the end of a shared 30 s).
        answered = time.monotonic()
        while "circuit.requests" not in (tmp_path / "stderr").read_text() \
                and time.monotonic() < answered + 15:
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(30)
    lines = (tmp_path / "stderr").read_text().splitlines()
    circuit_lines = [line for line in lines if " circuit." in line]
    assert any("no API keys" in line for line in circuit_lines)
    assert any("circuit.requests" in line for line in circuit_lines), "\n".join(lines[-20:])
    assert all(ISO.match(line) for line in circuit_lines), circuit_lines


def test_the_request_line_names_the_door_and_the_upstream_wire():
    record = RequestRecord(request_id="r1", timestamp="x", status="ok", api="embeddings",
                           upstream_api="embeddings")
    text, structured = io.StringIO(), io.StringIO()
    RequestLog(stream=text)([record])
    RequestLog(fmt="json", stream=structured)([record])
    assert " api=embeddings upstream_api=embeddings " in text.getvalue()
    line = orjson.loads(structured.getvalue())
    assert (line["api"], line["upstream_api"]) == ("embeddings", "embeddings")
