"""Transform.feed_read: the events of one network read, read in one call, are exactly the events
feeding each alone gives — for every wire format's reader, on well-formed and hostile streams."""

from __future__ import annotations

import orjson
import pytest

from circuit.errors import StreamBroken
from circuit.providers.anthropic_stream import StreamTranslator
from circuit.providers.anthropic_wire import MessagesEvents
from circuit.providers.openai_wire import OpenAIEvents
from circuit.providers.responses_wire import ResponsesEvents
from circuit.providers.sse import SSEEvent

KEY = "sk-upstream-0123456789abcdefghij"


def _named(kind: str, body: dict) -> SSEEvent:
    return SSEEvent(orjson.dumps({"type": kind, **body}), kind.encode())


def _text_delta(text: str) -> SSEEvent:
    return _named("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                "text": text}})


MESSAGES = [
    _named("message_start", {"message": {"id": "msg_1", "usage": {"input_tokens": 3,
                                                                   "output_tokens": 1}}}),
    _named("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    SSEEvent(b'{"type": "ping"}', b"ping"),
    _text_delta("Hello"),
    _named("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta",
                                                         "thinking": "hmm"}}),
    _named("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                         "partial_json": "{\"a\""}}),
    _named("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": ""}}),
    _text_delta(f"the key is {KEY}"),
    _named("content_block_stop", {"index": 0}),
    _named("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {
        "output_tokens": 7}}),
    _named("message_stop", {}),
    _text_delta("after the end"),
]
MESSAGES_HOSTILE = [
    [_text_delta("a"), SSEEvent(b"{nope", b"content_block_delta"), _text_delta("b")],
    [_text_delta("a"), _named("content_block_delta", {"index": 0}), _text_delta("b")],
    [_text_delta("a"), _named("content_block_delta", {"delta": "text"}), _text_delta("b")],
    # Named a delta, typed otherwise: read for what its type says.
    [_text_delta("a"), SSEEvent(orjson.dumps({"type": "message_delta", "delta": {
        "stop_reason": "max_tokens"}}), b"content_block_delta"), _text_delta("b")],
    [_text_delta("a"), _named("error", {"error": {"type": "overloaded_error",
                                                  "message": f"no ({KEY})"}}), _text_delta("b")],
]

RESPONSES = [
    _named("response.created", {"response": {"id": "resp_1"}}),
    _named("response.output_text.delta", {"delta": "Hel"}),
    _named("response.output_text.delta", {"delta": ""}),
    _named("response.function_call_arguments.delta", {"delta": "{\"q\""}),
    _named("response.output_text.delta", {"delta": f"key {KEY}"}),
    _named("response.output_text.delta", {"delta": 5}),
    _named("response.completed", {"response": {"id": "resp_1", "status": "completed",
                                               "output": [], "usage": {
                                                   "input_tokens": 3, "output_tokens": 4}}}),
    _named("response.output_text.delta", {"delta": "after the end"}),
]
RESPONSES_HOSTILE = [
    [_named("response.output_text.delta", {"delta": "a"}),
     SSEEvent(b"{nope", b"response.output_text.delta"),
     _named("response.output_text.delta", {"delta": "b"})],
    [_named("response.output_text.delta", {"delta": "a"}),
     SSEEvent(b"[1, 2]", b"response.output_text.delta")],
    [_named("response.output_text.delta", {"delta": "a"}),
     _named("error", {"code": "server_error", "message": f"no ({KEY})"}),
     _named("response.output_text.delta", {"delta": "b"})],
]


def _chat(chunk: dict) -> SSEEvent:
    return SSEEvent(orjson.dumps(chunk))


CHAT = [
    _chat({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
    _chat({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
    _chat({"choices": [{"index": 0, "delta": {"content": f"key {KEY}"}}]}),
    _chat({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    _chat({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    SSEEvent(b"[DONE]"),
    _chat({"choices": [{"index": 0, "delta": {"content": "after the end"}}]}),
]
CHAT_HOSTILE = [
    [_chat({"choices": [{"index": 0, "delta": {"content": "a"}}]}), SSEEvent(b"{nope"),
     _chat({"choices": [{"index": 0, "delta": {"content": "b"}}]})],
    [_chat({"choices": [{"index": 0, "delta": {"content": "a"}}]}), SSEEvent(b"[1]")],
    [_chat({"choices": [{"index": 0, "delta": {"content": "a"}}]}),
     _chat({"error": {"message": f"overloaded ({KEY})"}}),
     _chat({"choices": [{"index": 0, "delta": {"content": "b"}}]})],
]


def _each(transform, frames: list[SSEEvent]) -> tuple[list, bool]:
    """What feeding each event alone gives, up to the end or an error (and whether it raised)."""
    out: list = []
    for frame in frames:
        try:
            out += transform.feed(frame.data, frame.event)
        except StreamBroken:
            return out, True
        if transform.done or transform.failed:
            break
    return out, False


def _whole(transform, frames: list[SSEEvent]) -> tuple[list, bool]:
    out: list = []
    try:
        transform.feed_read(frames, out)
    except StreamBroken:
        return out, True
    return out, False


def _state(transform) -> tuple:
    return transform.done, transform.failed


READERS = {
    "chat": (lambda: OpenAIEvents(False, KEY), [CHAT, *CHAT_HOSTILE]),
    "chat usage": (lambda: OpenAIEvents(True, KEY), [CHAT]),
    "messages": (lambda: MessagesEvents("anthropic", KEY), [MESSAGES, *MESSAGES_HOSTILE]),
    "messages to chat": (lambda: StreamTranslator("anthropic", "claude", secret=KEY),
                         [MESSAGES, *MESSAGES_HOSTILE]),
    "responses": (lambda: ResponsesEvents("openai", KEY), [RESPONSES, *RESPONSES_HOSTILE]),
}
CASES = [(name, i) for name, (_, streams) in READERS.items() for i in range(len(streams))]


@pytest.mark.parametrize("reader, stream", CASES)
def test_a_read_gives_the_events_each_event_alone_gives(reader, stream):
    make, streams = READERS[reader]
    frames = streams[stream]
    alone, together = make(), make()
    expected, raised = _each(alone, frames)
    assert _whole(together, frames) == (expected, raised)
    assert _state(together) == _state(alone)


@pytest.mark.parametrize("reader", ["chat", "messages", "responses"])
def test_no_event_of_a_read_carries_the_key(reader):
    make, streams = READERS[reader]
    out, _ = _whole(make(), streams[0])
    assert out, "the stream was read"
    for event in out:
        assert KEY[:8].encode() not in event.data and KEY[-8:].encode() not in event.data
        assert KEY[:8] not in event.text
