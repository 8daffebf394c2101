"""Every upstream fault, through the real server, seen from both ends.

One table, one row per fault: what the fake upstream does, what the client must see (on the wire
with raw httpx, and through the official OpenAI SDK) and the one record the request must leave.
The gateway runs on a real port with short timeouts (first byte 1 s, idle 0.5 s), one upstream
call per request and the breaker kept out of the way, so each fault shows as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import orjson
import pytest

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.reliability.support import (
    CHAT,
    HELLO,
    TRACEBACK,
    auth,
    chat_body,
    is_openai_error,
    refused_port,
    sse_data,
)
from tests.support.gateway_server import GatewayServer

REFUSED_MODEL = "refused-model"  # routed to a provider whose port refuses connections
WORDS = "alpha beta gamma delta epsilon zeta eta theta"


@dataclass(frozen=True)
class Fault:
    name: str
    upstream: Behaviour | None
    stream: bool
    status: int  # the HTTP status the client gets
    code: str | None  # the error's code: in the JSON body, or in the stream's last event
    record: str  # the record's status
    sdk_error: type[openai.OpenAIError] | None
    model: str = "gpt-4o-mini"
    client_leaves: bool = False  # the client stops reading after a few events
    partial: bool = False  # the record keeps the text received before the fault
    usage_source: str | None = None


#: The gateway's timeouts here, in seconds, and the faults' delays around them: wide enough
#: that a machine busy enough to delay a healthy first event by a second (seen: a 504 for a
#: stream that was to drop mid-way) is not taken for a fault.
FIRST_BYTE = 3.0
IDLE = 1.5

FAULTS = [
    Fault("upstream_500", Behaviour(status=500), False, 502, "upstream_server_error",
          "failed", openai.InternalServerError),
    Fault("upstream_500_before_a_stream_starts", Behaviour(status=500), True, 502,
          "upstream_server_error", "failed", openai.InternalServerError),
    Fault("upstream_429_with_retry_after", Behaviour(status=429, retry_after="7"), False, 429,
          "rate_limit_exceeded", "failed", openai.RateLimitError),
    Fault("connection_refused", None, False, 502, "upstream_unreachable", "failed",
          openai.InternalServerError, model=REFUSED_MODEL),
    Fault("hang_past_the_first_byte_timeout", Behaviour(hang=FIRST_BYTE + 3), False, 504,
          "upstream_timeout", "failed", openai.InternalServerError),
    Fault("stream_silent_past_the_first_byte_timeout", Behaviour(first_chunk_delay=FIRST_BYTE + 3),
          True, 504, "upstream_timeout", "failed", openai.InternalServerError),
    Fault("first_event_after_the_idle_but_within_the_first_byte_timeout",
          Behaviour(first_chunk_delay=(IDLE + FIRST_BYTE) / 2, reply=WORDS), True, 200, None, "ok", None),
    Fault("drop_mid_stream", Behaviour(drop_after_chunks=3, reply=WORDS), True, 200,
          "upstream_stream_broken", "failed", openai.APIError, partial=True,
          usage_source="local"),
    Fault("stream_without_usage", Behaviour(send_usage=False, reply=WORDS), True, 200, None,
          "ok", None, usage_source="local"),
    Fault("malformed_sse", Behaviour(malformed_sse=True, reply=WORDS), True, 200,
          "bad_upstream_response", "failed", openai.APIError, partial=True),
    Fault("trickle_slower_than_the_idle_timeout", Behaviour(chunk_delay=IDLE + 1, reply=WORDS),
          True, 200, "upstream_idle_timeout", "failed", openai.APIError),
    Fault("client_disconnects_mid_stream",
          Behaviour(chunk_delay=0.1, reply=" ".join(["word"] * 40)), True, 200, None,
          "client_disconnected", None, client_leaves=True, partial=True, usage_source="local"),
]


def _name(fault: Fault) -> str:
    return fault.name


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory,
            fake_openai: FakeOpenAI) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("faults-gw")
    refused = refused_port()
    folder.joinpath("circuit.toml").write_text(
        f'[providers.refused]\nkind = "openai"\n'
        f'base_url = "http://127.0.0.1:{refused.getsockname()[1]}/v1"\n'
        f'api_key_env = "OPENAI_API_KEY"\n\n'
        f'[routes]\n"{REFUSED_MODEL}" = ["refused:gpt-4o-mini"]\n')
    server = GatewayServer(
        folder, PROVIDER="openai", OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_API_KEY="sk-upstream-provider-secret-42",
        CIRCUIT_FIRST_BYTE_TIMEOUT=FIRST_BYTE, CIRCUIT_IDLE_TIMEOUT=IDLE, CIRCUIT_RETRY_MAX_ATTEMPTS=1,
        CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000, CIRCUIT_BREAKER_MINIMUM_CALLS=10_000,
    ).start()
    yield server
    server.stop()
    refused.close()


@pytest.fixture
def fault_upstream(upstream: FakeOpenAI, request: pytest.FixtureRequest) -> FakeOpenAI:
    fault: Fault = request.getfixturevalue("fault")
    if fault.upstream is not None:
        upstream.script(fault.upstream)
    return upstream


def the_one_record(gateway: GatewayServer, request_id: str) -> dict:
    """The request's record, checked to stay the only one a moment after it appeared."""
    rows = gateway.records(request_id)
    assert rows, f"no record for {request_id}"
    time.sleep(0.05)
    rows = gateway.records(request_id, timeout=0)
    assert len(rows) == 1, f"{len(rows)} records for {request_id}"
    return rows[0]


def check_record(row: dict, fault: Fault) -> None:
    assert row["status"] == fault.record
    assert row["status_code"] == fault.status
    assert row["error_code"] == fault.code
    assert row["stream"] == int(fault.stream)
    if fault.partial:
        assert row["partial_text"], "the text received before the fault is kept"
    if fault.usage_source is not None:
        assert row["usage_source"] == fault.usage_source
        assert row["tokens_output"] > 0


def raw_call(gateway: GatewayServer, fault: Fault, request_id: str) -> tuple[httpx.Response,
                                                                               str]:
    """The response and its whole body, as a client on the wire sees them."""
    body = orjson.dumps({**chat_body(stream=fault.stream), "model": fault.model})
    with httpx.stream("POST", gateway.url + CHAT, content=body,
                      headers=auth(request_id=request_id), timeout=10) as response:
        if not fault.client_leaves:
            return response, response.read().decode()
        text = ""
        for chunk in response.iter_text():
            text += chunk
            if len(sse_data(text)) >= 4:
                break  # and leave: the connection is closed here
        return response, text


@pytest.mark.parametrize("fault", FAULTS, ids=_name)
def test_client_sees_the_fault_in_openai_shape_and_one_record_tells_it(
        gateway, fault_upstream, fault, request_id):
    response, text = raw_call(gateway, fault, request_id)

    assert response.status_code == fault.status
    assert response.headers["x-request-id"] == request_id
    assert TRACEBACK not in text
    if fault.status != 200:
        assert response.headers["content-type"].startswith("application/json")
        assert is_openai_error(orjson.loads(text))
        assert orjson.loads(text)["error"]["code"] == fault.code
        if fault.upstream is not None and fault.upstream.retry_after:
            assert response.headers["retry-after"] == fault.upstream.retry_after
    elif not fault.client_leaves:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_data(text)
        assert events[-1] == "[DONE]", "a clean end, whatever happened upstream"
        errors = [orjson.loads(e) for e in events[:-1] if '"error"' in e]
        if fault.code is None:
            assert errors == []
        else:
            assert errors == [orjson.loads(events[-2])], "one error, as the last event"
            assert is_openai_error(errors[0]) and errors[0]["error"]["code"] == fault.code
    if fault.client_leaves:
        assert fault_upstream.wait_for(
            lambda: fault_upstream.connections_closed_by_client == 1, timeout=3), \
            "the gateway dropped the upstream call when its client left"

    check_record(the_one_record(gateway, request_id), fault)


@pytest.mark.parametrize("fault", FAULTS, ids=_name)
def test_openai_sdk_raises_the_documented_error_and_one_record_tells_it(
        gateway, fault_upstream, fault, request_id):
    client = gateway.client()
    create = {"model": fault.model, "messages": HELLO,
              "extra_headers": {"x-request-id": request_id}}

    def consume() -> None:
        if not fault.stream:
            client.chat.completions.create(**create)
            return
        stream = client.chat.completions.create(stream=True, **create)
        for number, _chunk in enumerate(stream):
            if fault.client_leaves and number == 3:
                stream.close()
                return

    if fault.sdk_error is None:
        consume()
    else:
        with pytest.raises(fault.sdk_error) as raised:
            consume()
        if isinstance(raised.value, openai.APIStatusError):
            assert raised.value.status_code == fault.status
            assert raised.value.body["code"] == fault.code
        else:
            assert raised.value.body["code"] == fault.code, "the stream's error event"

    check_record(the_one_record(gateway, request_id), fault)
