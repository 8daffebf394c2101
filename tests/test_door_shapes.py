"""Each door's error shape and stream framing (circuit.gateway.doors), and the relay framing a
stream in its door's way: OpenAI's `data:` frames and `[DONE]` for chat, Anthropic's named
frames, no end marker and an `event: error` at a break for Messages."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from circuit.accounting.stream_tally import StreamTally
from circuit.errors import (
    AuthenticationFailed,
    CircuitError,
    InvalidRequest,
    ModelNotPriced,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimitExceeded,
    ServiceUnavailable,
    StreamBroken,
    UpstreamFailed,
    UpstreamTimeout,
)
from circuit.gateway.doors import CHAT, MESSAGES, data_frames, named_frames
from circuit.gateway.relay import StreamOutcome, StreamRelay
from circuit.gateway.responses import error_response
from circuit.providers.sse import SSEDecoder
from circuit.wire import StreamEvent

ANTHROPIC_FRAMES = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


@pytest.mark.parametrize(("error", "status", "kind"), [
    (InvalidRequest("bad"), 400, "invalid_request_error"),
    (AuthenticationFailed("who"), 401, "authentication_error"),
    (ModelNotPriced("no price"), 403, "permission_error"),
    (NotFound("where"), 404, "not_found_error"),
    (PayloadTooLarge("big"), 413, "request_too_large"),
    (RateLimitExceeded("slow down"), 429, "rate_limit_error"),
    (QuotaExceeded("spent"), 429, "rate_limit_error"),
    (UpstreamFailed("upstream said 500"), 502, "api_error"),
    (UpstreamTimeout("silent"), 504, "api_error"),
    (UpstreamFailed("overloaded", code="upstream_overloaded"), 529, "overloaded_error"),
    (CircuitError("bug"), 500, "api_error"),
])
def test_messages_door_answers_each_error_in_anthropic_shape(error, status, kind):
    response = error_response(error, MESSAGES)
    assert response.status_code == status
    assert orjson.loads(response.body) == {"type": "error",
                                           "error": {"type": kind, "message": error.message}}


def test_open_breaker_on_messages_door_is_503_with_fixed_message_and_retry_after():
    response = error_response(ServiceUnavailable(7), MESSAGES)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert orjson.loads(response.body) == {"type": "error", "error": {
        "type": "overloaded_error", "message": "Upstream provider temporarily unavailable"}}


def test_rate_limit_on_messages_door_keeps_retry_after():
    response = error_response(RateLimitExceeded("slow", headers={"retry-after": "3"}), MESSAGES)
    assert response.headers["retry-after"] == "3"


def test_chat_door_keeps_openai_shape():
    response = error_response(RateLimitExceeded("slow down"))
    assert orjson.loads(response.body) == {"error": {
        "message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}


def test_named_frames_rebuild_an_anthropic_stream_byte_for_byte():
    events = SSEDecoder().feed(ANTHROPIC_FRAMES)
    rebuilt = named_frames([StreamEvent(e.data, event=e.event) for e in events])
    assert rebuilt == ANTHROPIC_FRAMES


def test_named_frame_splits_a_multi_line_value_into_data_lines():
    frame = named_frames([StreamEvent(b"one\ntwo", event=b"note")])
    assert frame == b"event: note\ndata: one\ndata: two\n\n"
    assert SSEDecoder().feed(frame)[0].data == b"one\ntwo"


def test_a_read_of_chat_events_is_framed_as_the_upstream_sent_it():
    sent = b"data: {\"a\": 1}\n\ndata: {\"b\": 2}\n\n"
    events = [StreamEvent(e.data) for e in SSEDecoder().feed(sent)]
    assert data_frames(events) == sent
    assert data_frames([]) == b""


def test_named_frames_of_an_unnamed_event_are_bare_data_frames():
    assert named_frames([StreamEvent(b"{}"), StreamEvent(b"[]", event=b"x")]) == \
        b"data: {}\n\nevent: x\ndata: []\n\n"


class _Reads:
    """An EventStream of scripted reads (a list of events, or an error to raise)."""

    def __init__(self, reads: list) -> None:
        self._reads = reads

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self._reads:
            raise StopAsyncIteration
        read = self._reads.pop(0)
        if isinstance(read, Exception):
            raise read
        return read

    async def aclose(self) -> None:
        pass


def _relay(reads: list, door) -> tuple[bytes, StreamOutcome]:
    outcomes: list[StreamOutcome] = []
    relay = StreamRelay(_Reads(reads), StreamTally(), lambda _t, o: outcomes.append(o), {},
                        door=door)
    sent: list[bytes] = []

    async def receive() -> dict:
        await asyncio.Event().wait()
        return {}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    asyncio.run(relay({"type": "http"}, receive, send))
    assert len(outcomes) == 1
    return b"".join(sent), outcomes[0]


def _anthropic_events() -> list[StreamEvent]:
    return [StreamEvent(e.data, event=e.event) for e in SSEDecoder().feed(ANTHROPIC_FRAMES)]


def test_messages_relay_passes_named_frames_and_adds_no_end_marker():
    body, outcome = _relay([_anthropic_events()], MESSAGES)
    assert body == ANTHROPIC_FRAMES
    assert outcome.status == "ok"


def test_messages_relay_ends_a_broken_stream_with_an_anthropic_error_event():
    body, outcome = _relay([_anthropic_events()[:2], StreamBroken("upstream went away")],
                           MESSAGES)
    last = body.rsplit(b"\n\n", 2)[-2]
    assert last == b'event: error\ndata: {"type":"error","error":{"type":"api_error",' \
                   b'"message":"upstream went away"}}'
    assert b"[DONE]" not in body
    assert outcome.status == "failed"


def test_messages_relay_calls_an_overload_at_a_break_overloaded_error():
    body, _ = _relay([StreamBroken("busy", code="upstream_overloaded")], MESSAGES)
    assert b'"type":"overloaded_error"' in body


def test_chat_relay_still_frames_data_and_done():
    body, _ = _relay([[StreamEvent(b'{"choices":[]}')], StreamBroken("gone")], CHAT)
    assert body.startswith(b'data: {"choices":[]}\n\n')
    assert body.endswith(b"data: [DONE]\n\n")
    assert b'"code":"upstream_stream_broken"' in body
