"""OpenAI's Responses wire format, read as it passes through: usage, the text the output
tokens paid for, and each stream event as a StreamEvent.

A passthrough stream is read as cheaply as a chat stream: an event's type is its SSE `event:`
name (or, for a frame without one, found by a byte search in its head: OpenAI writes `"type"`
first), and only the events that carry what the gateway needs are parsed — the text deltas
(for a partial record and the output guard) and the terminal events (`response.completed` /
`incomplete` / `failed`, `error`), which carry the usage. `response.created`, `in_progress`, the `*.done` events and the `output_item` events echo
what was already seen (instructions, tools, whole texts): they are relayed unread.
"""

from __future__ import annotations

from typing import Any

import orjson

from circuit.errors import StreamBroken, UpstreamFailed
from circuit.providers.sse import FrameReader, SSEEvent
from circuit.providers.upstream_errors import (
    WINDOW,
    quotes_secret,
    redact,
    safe_error_event,
    upstream_error_fields,
)
from circuit.wire import Completion, StreamEvent, Usage

#: No single request uses more tokens than this; a larger count is an upstream's mistake.
_MAX_TOKENS = 100_000_000
#: How far into an event its `"type"` is looked for (OpenAI writes it first).
_HEAD = 96

#: Delta events whose `delta` is output the tokens paid for.
_DELTAS = frozenset({b"response.output_text.delta", b"response.function_call_arguments.delta",
                     b"response.refusal.delta", b"response.reasoning_summary_text.delta",
                     b"response.reasoning_text.delta",
                     b"response.custom_tool_call_input.delta"})
#: Events that end a stream (and carry the whole response, its usage included).
_ENDS = frozenset({b"response.completed", b"response.incomplete", b"response.failed"})
_ERROR = b"error"
_KINDS = (*_DELTAS, *_ENDS, _ERROR)
_READ = frozenset(_KINDS)


def _kind(data: bytes, name: bytes | None) -> bytes | None:
    """The event's type, when it is one the gateway reads (None: relayed unread)."""
    if name is not None:
        return name if name in _READ else None
    head = data[:_HEAD]
    for kind in _KINDS:
        if b'"' + kind + b'"' in head:
            return kind
    return None


def usage_from_responses(usage: Any) -> Usage | None:
    """Usage from a Responses `usage` object, or None when it is absent or malformed."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details")
    output_details = usage.get("output_tokens_details")
    details = details if isinstance(details, dict) else {}
    output_details = output_details if isinstance(output_details, dict) else {}
    counts = (usage.get("input_tokens"), usage.get("output_tokens"),
              details.get("cached_tokens"), details.get("cache_write_tokens"),
              output_details.get("reasoning_tokens"))
    if usage.get("input_tokens") is None and usage.get("output_tokens") is None:
        return None
    if not all(count is None or (isinstance(count, int) and not isinstance(count, bool)
                                 and 0 <= count <= _MAX_TOKENS) for count in counts):
        return None  # counted locally instead: a wild count must not skew the ledger
    return Usage(input_tokens=usage.get("input_tokens") or 0,
                 output_tokens=usage.get("output_tokens") or 0,
                 cached_input_tokens=details.get("cached_tokens") or 0,
                 cache_write_tokens=details.get("cache_write_tokens") or 0,
                 reasoning_tokens=output_details.get("reasoning_tokens") or 0)


def output_text(output: Any) -> str:
    """Everything of a response's `output` its output tokens paid for: message text and
    refusals, function-call names and arguments, reasoning summaries and text."""
    parts: list[Any] = []
    for item in _dicts(output):
        kind = item.get("type")
        if kind == "message":
            for part in _dicts(item.get("content")):
                parts += [part.get("text"), part.get("refusal")]
        elif kind in ("function_call", "custom_tool_call"):
            parts += [item.get("name"), item.get("arguments"), item.get("input")]
        elif kind == "reasoning":
            # Summaries (OpenAI's), and the reasoning text itself where an upstream shows it
            # (vLLM's Responses server for open models): output tokens paid for both.
            parts += [part.get("text") for field in ("summary", "content")
                      for part in _dicts(item.get(field))]
    return "".join(part for part in parts if isinstance(part, str))


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of what should be an array of them (an upstream's odd shape reads as none)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def finish_of(response: dict[str, Any]) -> str | None:
    """A finish reason in chat's words for the record: stop, length, content_filter."""
    status = response.get("status")
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    output = response.get("output")
    if isinstance(output, list) and any(isinstance(item, dict) and item.get("type") ==
                                        "function_call" for item in output):
        return "tool_calls"
    return "stop" if status == "completed" else status if isinstance(status, str) else None


class ResponsesReader:
    """The WireReader of the Responses door's passthrough (see circuit/wire.py)."""

    def __init__(self, provider: str) -> None:
        self._provider = provider

    def completion(self, body: bytes) -> Completion:
        try:
            response = orjson.loads(body)
            output = response["output"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise UpstreamFailed(f"{self._provider} sent an unreadable response",
                                 code="bad_upstream_response") from None
        if not isinstance(response, dict):
            raise UpstreamFailed(f"{self._provider} sent an unreadable response",
                                 code="bad_upstream_response")
        return Completion(body=body, usage=usage_from_responses(response.get("usage")),
                          finish_reason=finish_of(response), text=output_text(output))

    def transform(self, secret: str | None = None) -> ResponsesEvents:
        return ResponsesEvents(self._provider, secret)


class ResponsesEvents(FrameReader):
    """Reads a Responses stream's events into StreamEvents (a Transform), each keeping its
    SSE name so the door frames it as it came."""

    __slots__ = ("_provider", "_secret", "_ends", "done", "failed")

    def __init__(self, provider: str, secret: str | None = None) -> None:
        self._provider = provider
        # An upstream's error event may quote the key: events carrying its head or tail are
        # redacted whole (two byte searches an event).
        self._secret = secret if secret and len(secret) >= 2 * WINDOW else None
        self._ends = (secret[:WINDOW].encode(), secret[-WINDOW:].encode()) \
            if self._secret else None
        self.done = False  # a terminal event was seen: the stream ended well
        self.failed = False  # an error (or response.failed): nothing worth reading follows

    def feed(self, data: bytes, name: bytes | None = None) -> list[StreamEvent]:
        if self._ends is not None and quotes_secret(data, *self._ends):
            data = redact(data.decode("utf-8", "replace"), self._secret).encode()
        kind = (name if name in _READ else None) if name is not None else _kind(data, None)
        if kind is None:
            return [StreamEvent(data, name)]
        if kind in _DELTAS:
            try:  # _load's, inline: this runs for every delta
                delta = orjson.loads(data).get("delta")
            except (orjson.JSONDecodeError, AttributeError):
                self._load(data)  # raises StreamBroken, as for any event that is not JSON
                raise
            text = delta if isinstance(delta, str) else ""
            return [StreamEvent(data, name, True, text, 1 if text else 0)]
        if kind in _ENDS:
            return [self._end(data, name)]
        event = self._load(data)
        if event.get("type") != "error":
            return [StreamEvent(data, name)]
        self.failed = True
        error = event.get("error") if isinstance(event.get("error"), dict) else event
        return [StreamEvent(safe_error_event(data, event, self._secret), event=name,
                            error=upstream_error_fields(error, self._secret))]

    def feed_read(self, frames: list[SSEEvent], out: list[StreamEvent]) -> None:
        """`feed` of each event of one read, into `out` (FrameReader's contract), a named delta
        read inline: most of a stream, and a call an event was a tenth of its cost."""
        ends = self._ends
        for frame in frames:
            data, name = frame.data, frame.event
            # quotes_secret's test, inline; an event that quotes the key goes through feed.
            if name in _DELTAS and (ends is None or not (data.partition(ends[0])[1]
                                                         or data.partition(ends[1])[1])):
                try:
                    delta = orjson.loads(data).get("delta")
                except (orjson.JSONDecodeError, AttributeError):
                    pass  # feed reads it again, and says what is wrong with it
                else:
                    text = delta if isinstance(delta, str) else ""
                    out.append(StreamEvent(data, name, True, text, 1 if text else 0))
                    continue
            out.extend(self.feed(data, name))
            if self.done or self.failed:
                return

    def _end(self, data: bytes, name: bytes | None) -> StreamEvent:
        event = self._load(data)
        response = event.get("response")
        if not isinstance(response, dict):
            raise StreamBroken(f"{self._provider} sent a {event.get('type')} event without "
                               "its response", code="bad_upstream_response")
        usage = usage_from_responses(response.get("usage"))
        if event.get("type") == "response.failed":
            self.failed = True
            error = upstream_error_fields(response.get("error"), self._secret)
            return StreamEvent(safe_error_event(data, event, self._secret), event=name,
                               usage=usage, finish_reason="error",
                               error={**error, "code": error["code"] or "response_failed"})
        self.done = True
        return StreamEvent(data, event=name, usage=usage, finish_reason=finish_of(response))

    def _load(self, data: bytes) -> dict[str, Any]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise StreamBroken(f"{self._provider} sent an event that is not JSON",
                               code="bad_upstream_response") from None
        if not isinstance(event, dict):
            raise StreamBroken(f"{self._provider} sent an event that is not a JSON object",
                               code="bad_upstream_response")
        return event
