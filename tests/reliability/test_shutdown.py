"""SIGTERM while requests are in flight: the gateway drains, and nothing goes unrecorded.

`circuit serve` runs as a real process in front of a slow-streaming fake upstream. Several
streams and one request still waiting for its upstream are in flight when SIGTERM arrives; the
gateway must stop taking connections, let them finish (its grace period is 30 s by default),
drain the record writer, and exit. A second gateway, with a 1 s grace period
(CIRCUIT_SHUTDOWN_GRACE), shows what becomes of streams that outlast it.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.reliability.support import (
    CHAT,
    TRACEBACK,
    GatewayProcess,
    auth,
    chat_body,
    duplicated_ids,
    is_openai_error,
    sse_data,
)

STREAMS = 4
WORDS = [f"w{i}" for i in range(12)]


@dataclass
class Drained:
    """What the clients saw and the database kept, once the gateway exited."""

    bodies: dict[str, str] = field(default_factory=dict)  # request id -> whole body read
    errors: dict[str, str] = field(default_factory=dict)  # request id -> client exception
    statuses: dict[str, int] = field(default_factory=dict)
    after_sigterm: str = ""  # what a new connection got while draining
    exit_status: int | None = None
    seconds_to_exit: float = 0.0
    rows: list[dict] = field(default_factory=list)
    granted_micros: int = 0  # the budget ledger's leases still out, once the gateway exited
    stderr: str = ""


def _in_flight_then_signal(gateway: GatewayProcess, upstream: FakeOpenAI,
                           json_request: bool, hang: float = 1.0) -> Drained:
    """Start the requests, wait until every one is under way, SIGTERM, and collect."""
    result = Drained()
    first_event = threading.Barrier(STREAMS + 1, timeout=15)

    def stream(request_id: str) -> None:
        text = ""
        try:
            with httpx.stream("POST", gateway.url + CHAT, json=chat_body(stream=True),
                              headers=auth(request_id=request_id), timeout=40) as response:
                result.statuses[request_id] = response.status_code
                for chunk in response.iter_text():
                    if not text:
                        first_event.wait()
                    text += chunk
        except httpx.HTTPError as exc:
            result.errors[request_id] = repr(exc)
        result.bodies[request_id] = text

    def waiting(request_id: str) -> None:
        try:
            response = httpx.post(gateway.url + CHAT, json=chat_body(),
                                  headers=auth(request_id=request_id), timeout=40)
            result.statuses[request_id] = response.status_code
            result.bodies[request_id] = response.text
        except httpx.HTTPError as exc:
            result.errors[request_id] = repr(exc)

    threads = []
    if json_request:
        # Consumes the one scripted behaviour: the upstream takes `hang` s to begin its answer.
        upstream.script(Behaviour(hang=hang))
        threads.append(threading.Thread(target=waiting, args=("drain-waiting",)))
        threads[-1].start()
        assert upstream.wait_for(lambda: upstream.calls == 1, timeout=10)
    for number in range(STREAMS):
        threads.append(threading.Thread(target=stream, args=(f"drain-stream-{number}",)))
        threads[-1].start()
    first_event.wait()  # every stream has begun; the JSON request is waiting upstream

    started = time.monotonic()
    gateway.signal(signal.SIGTERM)
    time.sleep(0.5)  # uvicorn notices within 0.1 s and closes its listening socket
    try:
        result.after_sigterm = str(httpx.get(gateway.url + "/healthz", timeout=2).status_code)
    except httpx.TransportError as exc:
        result.after_sigterm = type(exc).__name__
    for thread in threads:
        thread.join(45)
    result.exit_status = gateway.wait(45)
    result.seconds_to_exit = time.monotonic() - started
    result.rows = gateway.rows()
    with sqlite3.connect(gateway.db_path) as db:
        result.granted_micros = db.execute(
            "SELECT COALESCE(SUM(granted_micros), 0) FROM budget_ledger").fetchone()[0]
    result.stderr = gateway.stderr()
    return result


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def drained(tmp_path_factory: pytest.TempPathFactory, slow_upstream: FakeOpenAI) -> Drained:
    """`circuit serve`, SIGTERM with four ~1.2 s streams and one waiting request in flight."""
    slow_upstream.reset()
    slow_upstream.default = Behaviour(chunk_delay=0.1, reply=" ".join(WORDS))
    gateway = GatewayProcess(tmp_path_factory.mktemp("sigterm"), PROVIDER="openai",
                             OPENAI_BASE_URL=slow_upstream.base_url, OPENAI_API_KEY="sk-up",
                             CIRCUIT_LOG_LEVEL="info").wait_ready()
    try:
        return _in_flight_then_signal(gateway, slow_upstream, json_request=True)
    finally:
        gateway.kill()


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory, slow_upstream: FakeOpenAI) -> Drained:
    """`circuit serve` with a 1 s grace period (CIRCUIT_SHUTDOWN_GRACE), SIGTERM with four
    ~2.4 s streams in flight and one request whose upstream takes 5 s to answer."""
    slow_upstream.reset()
    slow_upstream.default = Behaviour(chunk_delay=0.2, reply=" ".join(WORDS))
    gateway = GatewayProcess(tmp_path_factory.mktemp("sigterm-cut"),
                             CIRCUIT_SHUTDOWN_GRACE=1, PROVIDER="openai",
                             OPENAI_BASE_URL=slow_upstream.base_url,
                             OPENAI_API_KEY="sk-up", CIRCUIT_DAILY_USD_LIMIT=100).wait_ready()
    try:
        return _in_flight_then_signal(gateway, slow_upstream, json_request=True, hang=5.0)
    finally:
        gateway.kill()


def _streams(result: Drained) -> list[str]:
    return [rid for rid in result.bodies if rid.startswith("drain-stream-")]


# -- within the grace period: everything finishes ----------------------------------------------

def test_streams_in_flight_at_sigterm_run_to_their_end(drained):
    assert len(_streams(drained)) == STREAMS
    for request_id in _streams(drained):
        assert request_id not in drained.errors, drained.errors[request_id]
        events = sse_data(drained.bodies[request_id])
        assert events[-1] == "[DONE]"
        text = "".join(orjson.loads(e)["choices"][0]["delta"].get("content") or ""
                       for e in events[:-1] if orjson.loads(e)["choices"])
        assert text.split() == WORDS, "every word, none lost to the shutdown"


def test_a_request_waiting_for_its_upstream_at_sigterm_gets_its_answer(drained):
    assert "drain-waiting" not in drained.errors, drained.errors.get("drain-waiting")
    assert drained.statuses["drain-waiting"] == 200
    assert orjson.loads(drained.bodies["drain-waiting"])["choices"][0]["message"]["content"]


def test_every_request_in_flight_at_sigterm_has_exactly_one_ok_row(drained):
    by_id = {row["request_id"]: row for row in drained.rows}
    assert duplicated_ids(drained.rows) == {}
    assert set(by_id) == set(drained.bodies)
    assert {row["status"] for row in drained.rows} == {"ok"}


def test_a_draining_gateway_takes_no_new_connections(drained):
    assert drained.after_sigterm == "ConnectError"


def test_a_draining_gateway_logs_no_traceback(drained):
    assert TRACEBACK not in drained.stderr


def test_circuit_serve_exits_0_after_draining_on_sigterm(drained):
    assert drained.exit_status == 0


# -- past the grace period: streams are cut, and still recorded --------------------------------

def test_streams_cut_after_the_grace_period_are_each_recorded_once_as_gateway_shutdown(cut):
    assert duplicated_ids(cut.rows) == {}
    assert {row["request_id"] for row in cut.rows} == {*_streams(cut), "drain-waiting"}
    for row in cut.rows:
        if row["request_id"] == "drain-waiting":
            continue
        assert (row["status"], row["status_code"], row["error_code"]) == (
            "failed", 200, "gateway_shutdown")
        assert row["partial_text"], "what the client received is kept"
    assert cut.seconds_to_exit < 10, "the grace period bounds the shutdown"


def test_streams_cut_after_the_grace_period_end_with_an_error_event_and_done(cut):
    for request_id in _streams(cut):
        assert request_id not in cut.errors, cut.errors[request_id]
        events = sse_data(cut.bodies[request_id])
        assert events[-1] == "[DONE]"
        error = orjson.loads(events[-2])
        assert is_openai_error(error) and error["error"]["code"] == "gateway_shutdown"



def test_a_request_still_waiting_for_its_upstream_after_the_grace_period_gets_a_503(cut):
    # uvicorn cancels it: it is answered in the door's shape, retryable, not with a plain 500.
    assert "drain-waiting" not in cut.errors, cut.errors.get("drain-waiting")
    assert cut.statuses["drain-waiting"] == 503
    error = orjson.loads(cut.bodies["drain-waiting"])
    assert is_openai_error(error) and error["error"]["code"] == "gateway_shutdown"


def test_a_request_still_waiting_for_its_upstream_after_the_grace_period_is_recorded(cut):
    row, = [row for row in cut.rows if row["request_id"] == "drain-waiting"]
    assert (row["status"], row["status_code"], row["error_code"]) == (
        "failed", 503, "gateway_shutdown")
    assert row["attempts"] == 1
    # Its upstream may finish, and bill, the answer: what it reserved is charged, not a count.
    assert row["cost_micros"] > 0 and row["usage_source"] is None


def test_a_gateway_cut_at_its_grace_period_logs_no_traceback(cut):
    assert TRACEBACK not in cut.stderr


def test_a_shutdown_past_its_grace_period_leaves_no_budget_held(cut):
    # The cut streams are settled by the writer's local counts as it drains, after the leases
    # went back: what they did not spend must go back too, not stay held for the day.
    assert cut.granted_micros == sum(row["cost_micros"] or 0 for row in cut.rows)
