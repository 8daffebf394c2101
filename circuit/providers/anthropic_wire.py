"""Reading Anthropic Messages answers as they pass through unchanged (the Messages door to an
Anthropic target): the WireReader of `AnthropicProvider.forward`.

The bytes are the upstream's; what is read from them is only what accounting needs:

    message_start          usage (input, cache read, cache write)
    content_block_start    a tool's name, a block's opening text   (counted as output)
    content_block_delta    text, thinking, tool input JSON          (counted as output)
    message_delta          usage (output, cumulative), stop_reason
    message_stop           the end; the usage gathered, when message_delta carried one
    error                  kept (redacted) so the call can be retried before the first byte
    ping                   relayed without being parsed
    content_block_stop     relayed without being parsed, when it is Anthropic's own bytes

Each event keeps its SSE name so the door frames it as it came (`event: <name>`).

Per event the work is kept to what its reading needs: a text delta (most of a stream) is one
JSON parse and two look-ups, read inline; `message_stop` and `content_block_stop` as Anthropic
writes them (`{"type":"message_stop"}`, `{"type":"content_block_stop",...`) are known by their
bytes, unparsed — any other shape of them is parsed and read as before.
"""

from __future__ import annotations

from typing import Any

import orjson

from circuit.errors import StreamBroken, UpstreamFailed
from circuit.providers.anthropic_stream import merge_usage
from circuit.providers.anthropic_translate import usage_from_anthropic
from circuit.providers.sse import FrameReader, SSEEvent
from circuit.providers.upstream_errors import (
    WINDOW,
    quotes_secret,
    redact,
    safe_error_event,
    upstream_error_fields,
)
from circuit.wire import Completion, StreamEvent

_PING = b"ping"
_DELTA = b"content_block_delta"
_BLOCK_STOP = b"content_block_stop"
#: The start of Anthropic's content_block_stop data: its type, and more keys after it.
_BLOCK_STOP_HEAD = b'{"type":"content_block_stop",'
_STOP = b"message_stop"
_STOP_DATA = b'{"type":"message_stop"}'


def message_text(message: dict[str, Any]) -> str:
    """What a Messages answer's output tokens paid for: text, thinking, tool names and
    inputs (for a local count when usage is missing)."""
    pieces: list[str] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            pieces.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            pieces.append(block["thinking"])
        elif kind in ("tool_use", "server_tool_use"):
            pieces.append(str(block.get("name") or ""))
            pieces.append(orjson.dumps(block.get("input") or {}).decode())
    return "".join(pieces)


class MessagesEvents(FrameReader):
    """The Transform of a passed-through Messages stream: one StreamEvent per SSE event, its
    data and name unchanged (unless it quotes the provider's key: then that event is redacted)."""

    __slots__ = ("_provider", "_secret", "_ends", "_usage", "_output_reported", "done",
                 "error", "failed", "finish_reason")

    def __init__(self, provider: str = "anthropic", secret: str | None = None) -> None:
        self._provider = provider
        self._secret = secret if secret and len(secret) >= 2 * WINDOW else None
        self._ends = (secret[:WINDOW].encode(), secret[-WINDOW:].encode()) \
            if self._secret else None
        self._usage: dict[str, Any] = {}
        self._output_reported = False
        self.done = False
        #: An `error` event's fields (redacted); set, the stream is over.
        self.error: dict[str, Any] | None = None
        #: `error` is set (an attribute, not a property: the stream asks after every event).
        self.failed = False
        self.finish_reason: str | None = None

    def feed(self, data: bytes, name: bytes | None = None) -> list[StreamEvent]:
        if name == _PING:
            return [StreamEvent(data, name)]
        if self._ends is not None and quotes_secret(data, *self._ends):
            data = redact(data.decode("utf-8", "replace"), self._secret).encode()
        if name == _BLOCK_STOP and data[:29] == _BLOCK_STOP_HEAD:
            return [StreamEvent(data, name)]  # nothing in it to read
        if name == _STOP and data == _STOP_DATA:
            return [self._stop(StreamEvent(data, name))]
        try:
            event = orjson.loads(data)  # parse_event's, inline: this runs for every event
            kind = event["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise StreamBroken(f"{self._provider} sent an unreadable stream event",
                               code="bad_upstream_response") from None
        try:
            if kind == "content_block_delta":  # most of a stream: read here, in one step
                delta = event["delta"]
                text = delta.get("text") or delta.get("thinking") or delta.get("partial_json")
                if isinstance(text, str) and text:
                    return [StreamEvent(data, name, True, text, 1)]
                return [StreamEvent(data, name)]
            out = StreamEvent(data, name)
            self._read(kind, event, out)
        except (KeyError, TypeError, AttributeError):
            raise StreamBroken(f"{self._provider} sent a malformed {kind} event",
                               code="bad_upstream_response") from None
        return [out]

    def feed_read(self, frames: list[SSEEvent], out: list[StreamEvent]) -> None:
        """`feed` of each event of one read, into `out` (FrameReader's contract), a text delta
        read inline: most of a stream, and a call an event was a tenth of its cost."""
        ends = self._ends
        for frame in frames:
            data, name = frame.data, frame.event
            # quotes_secret's test, inline; an event that quotes the key goes through feed.
            if name == _DELTA and (ends is None or not (data.partition(ends[0])[1]
                                                        or data.partition(ends[1])[1])):
                try:
                    event = orjson.loads(data)
                    if event["type"] == "content_block_delta":
                        delta = event["delta"]
                        text = delta.get("text") or delta.get("thinking") or \
                            delta.get("partial_json")
                        out.append(StreamEvent(data, name, True, text, 1)
                                   if isinstance(text, str) and text else StreamEvent(data, name))
                        continue
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                    pass  # feed reads it again, and says what is wrong with it
            out.extend(self.feed(data, name))
            if self.done or self.failed:
                return

    def _stop(self, out: StreamEvent) -> StreamEvent:
        self.done = True
        # Without message_delta's output count, message_start's (1, or 0) would undercount:
        # no usage, and the gateway counts the output itself.
        if self._output_reported:
            out.usage = usage_from_anthropic(self._usage)
        return out

    def _read(self, kind: str, event: dict[str, Any], out: StreamEvent) -> None:
        if kind == "content_block_start":
            block = event["content_block"]
            text = block.get("name") if block.get("type") != "text" else block.get("text")
            if isinstance(text, str) and text:
                out.text, out.outputs = text, 1
        elif kind == "message_start":
            merge_usage(self._usage, event["message"].get("usage"))
        elif kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
                self._output_reported = True
            merge_usage(self._usage, usage)
            stop = (event.get("delta") or {}).get("stop_reason")
            if isinstance(stop, str):
                self.finish_reason = out.finish_reason = stop
        elif kind == "message_stop":
            self._stop(out)
        elif kind == "error":
            out.data = safe_error_event(out.data, event, self._secret)
            fields = upstream_error_fields(event.get("error"), self._secret)
            self.error = {k: v for k, v in fields.items() if v is not None}
            self.failed = True
            out.error = {"message": self.error.get("message") or "stream failed",
                         "type": "upstream_error",
                         "code": "upstream_overloaded"
                         if self.error.get("type") == "overloaded_error"
                         else "upstream_stream_error"}


class MessagesReader:
    """The WireReader of the Messages door's passthrough (circuit.wire.WireReader)."""

    def __init__(self, provider: str = "anthropic") -> None:
        self._provider = provider

    def completion(self, body: bytes) -> Completion:
        try:
            message = orjson.loads(body)
            usage = usage_from_anthropic(message.get("usage"))
            stop = message.get("stop_reason")
            text = message_text(message)
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise UpstreamFailed(f"{self._provider} sent an unreadable answer",
                                 code="bad_upstream_response") from None
        return Completion(body=body, usage=usage,
                          finish_reason=stop if isinstance(stop, str) else None, text=text)

    def transform(self, secret: str | None = None) -> MessagesEvents:
        return MessagesEvents(self._provider, secret)
