"""An upstream's stream error event that quotes the provider key as no search of its bytes
finds it — every character a JSON escape, or a run from the key's middle alone — reaches
neither the client (the event relayed, as its JSON parser reads it) nor the record (the
error's fields), on every wire format."""

from __future__ import annotations

import orjson
import pytest

from circuit.providers.anthropic_wire import MessagesEvents
from circuit.providers.openai_passthrough import CompletionsEvents
from circuit.providers.openai_wire import OpenAIEvents
from circuit.providers.responses_wire import ResponsesEvents
from circuit.providers.sse import SSEEvent
from circuit.providers.upstream_errors import WINDOW

KEY = "sk-proj-0123456789abcdefGHIJKLMNopqrstuvWXYZ"
ESCAPED = "".join(f"\\u{ord(c):04x}" for c in KEY)
MIDDLE = KEY[12:30]


def _error(shape: str, quote: str) -> bytes:
    said = f"generation failed for key {quote}"
    if shape == "openai":
        return (f'{{"error": {{"message": "{said}", "type": "server_error", "param": '
                f'"{quote}", "code": "x{quote}"}}}}').encode()
    if shape == "messages":
        return (f'{{"type": "error", "error": {{"type": "overloaded_error", '
                f'"message": "{said}"}}}}').encode()
    if shape == "responses":
        return f'{{"type": "error", "code": "x{quote}", "message": "{said}"}}'.encode()
    return (f'{{"type": "response.failed", "response": {{"id": "resp_1", "status": "failed", '
            f'"error": {{"code": "server_error", "message": "{said}"}}, "output": []}}}}').encode()


TRANSFORMS = {
    "chat": (lambda: OpenAIEvents(False, KEY), "openai", None),
    "completions": (lambda: CompletionsEvents(False, KEY), "openai", None),
    "messages": (lambda: MessagesEvents("anthropic", KEY), "messages", b"error"),
    "responses": (lambda: ResponsesEvents("openai", KEY), "responses", b"error"),
    "responses failed": (lambda: ResponsesEvents("openai", KEY), "failed", b"response.failed"),
}


def _quotes_key(text: str) -> bool:
    return any(KEY[i:i + WINDOW] in text for i in range(len(KEY) - WINDOW + 1))


@pytest.mark.parametrize("quote", [ESCAPED, MIDDLE], ids=["json-escaped", "middle"])
@pytest.mark.parametrize("wire", list(TRANSFORMS))
def test_an_error_event_quoting_the_key_is_relayed_and_recorded_without_it(wire, quote):
    make, shape, name = TRANSFORMS[wire]
    transform = make()
    out: list = []
    transform.feed_read([SSEEvent(_error(shape, quote), name)], out)
    (event,) = [e for e in out if e.error is not None]
    as_read = orjson.dumps(orjson.loads(event.data)).decode()  # escapes decoded
    assert "generation failed" in as_read
    assert not _quotes_key(as_read)
    assert not _quotes_key(orjson.dumps(event.error).decode())


def test_an_error_event_that_quotes_no_key_is_relayed_byte_for_byte():
    data = _error("openai", "nothing secret here")
    out: list = []
    OpenAIEvents(False, KEY).feed_read([SSEEvent(data)], out)
    assert out[0].data is data
