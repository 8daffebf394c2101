"""Anthropic's Messages stream → OpenAI `chat.completion.chunk` events, one event at a time.

Each chunk becomes a StreamEvent carrying what the translation already knows (text, usage,
finish reason, error), so nothing is parsed again to count it.

    event                         OpenAI chunk(s)
    message_start                 delta {"role": "assistant", "content": ""}
    content_block_start  text     delta.content (when the block starts with text)
    content_block_start  tool_use delta.tool_calls[{index, id, type, function{name, ""}}]
    content_block_delta  text     delta.content
    content_block_delta  json     delta.tool_calls[{index, function{arguments}}]
    content_block_stop            ("{}" as arguments for a tool call that had none)
    message_delta                 an empty delta with finish_reason
    message_stop                  the usage-only chunk ("choices": [])
    error                         {"error": {message, type, code}}
    ping, thinking, others        nothing
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from circuit.errors import StreamBroken
from circuit.providers.anthropic_translate import (
    FINISH_REASONS,
    openai_usage,
    usage_from_anthropic,
)
from circuit.providers.sse import FrameReader
from circuit.providers.upstream_errors import upstream_error_fields
from circuit.wire import StreamEvent, Usage


class StreamTranslator(FrameReader):
    """Turns Anthropic stream events into OpenAI chunks, one event at a time.

    `stopped` (also `done`) is set by `message_stop` (the stream ended well); `error` (and
    `failed`) by an `error` event, which becomes an OpenAI error payload (`{"error": {...}}`)
    for the relay to pass on. It is the Transform of an UpstreamEventStream."""

    def __init__(self, provider: str, model: str, usage_nulls: bool = False,
                 secret: str | None = None) -> None:
        self._provider = provider
        self._secret = secret  # cut out of an error event's message, which may quote it
        self._base: dict[str, Any] = {"id": "chatcmpl-", "object": "chat.completion.chunk",
                                      "created": int(time.time()), "model": model}
        if usage_nulls:  # what OpenAI does when the client asked for the usage chunk
            self._base["usage"] = None
        self._forward_usage = usage_nulls
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, list[Any]] = {}  # block index → [tool call index, args sent]
        self._started = False
        self.finish_reason: str | None = None
        self.stopped = False
        self.error: dict[str, Any] | None = None

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._usage) if self._usage else None

    @property
    def done(self) -> bool:
        return self.stopped

    @property
    def failed(self) -> bool:
        return self.error is not None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None,
               text: str = "") -> StreamEvent:
        data = orjson.dumps({**self._base, "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})
        return StreamEvent(data, text=text, outputs=1 if text else 0, finish_reason=finish)

    def feed(self, data: bytes, name: bytes | None = None) -> list[StreamEvent]:
        """The OpenAI chunks for one Anthropic event's `data`."""
        event, kind = parse_event(self._provider, data)
        try:
            return self._translate(kind, event)
        except (KeyError, TypeError, AttributeError):
            raise StreamBroken(f"{self._provider} sent a malformed {kind} event",
                               code="bad_upstream_response") from None

    def _translate(self, kind: str, event: dict[str, Any]) -> list[StreamEvent]:
        if kind == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                text = delta["text"]
                return [self._chunk({"content": text}, text=text)] if text else []
            tool = self._tools.get(event["index"])
            if delta["type"] == "input_json_delta" and tool is not None \
                    and delta["partial_json"]:
                tool[1] = True
                arguments = delta["partial_json"]
                return [self._chunk({"tool_calls": [
                    {"index": tool[0], "function": {"arguments": arguments}}]}, text=arguments)]
            # Thinking, signature and citation deltas, and the input of server-side tools
            # (web search, ...), have no OpenAI counterpart.
            return []
        if kind == "content_block_start":
            block = event["content_block"]
            if block["type"] == "text":
                text = block.get("text")
                return [self._chunk({"content": text}, text=text)] if text else []
            if block["type"] == "tool_use":
                number = len(self._tools)
                self._tools[event["index"]] = [number, False]
                return [self._chunk({"tool_calls": [
                    {"index": number, "id": block["id"], "type": "function",
                     "function": {"name": block["name"], "arguments": ""}}]},
                    text=block["name"])]
            return []
        if kind == "content_block_stop":
            tool = self._tools.get(event["index"])
            if tool is not None and not tool[1]:
                # A call without arguments: OpenAI would send an empty object, not nothing.
                tool[1] = True
                return [self._chunk({"tool_calls": [
                    {"index": tool[0], "function": {"arguments": "{}"}}]}, text="{}")]
            return []
        if kind == "message_start":
            if self._started:
                return []
            self._started = True
            message = event["message"]
            self._base["id"] = "chatcmpl-" + str(message["id"])
            if isinstance(message.get("model"), str) and message["model"]:
                self._base["model"] = message["model"]
            self._take_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            self._take_usage(event.get("usage"))
            stop_reason = (event.get("delta") or {}).get("stop_reason")
            self.finish_reason = FINISH_REASONS.get(stop_reason, "stop") if stop_reason \
                else "stop"
            return [self._chunk({}, self.finish_reason)]
        if kind == "message_stop":
            self.stopped = True
            usage = self.usage
            if usage is None:
                return []
            # The usage chunk OpenAI sends last; hidden from a client that did not ask for it.
            return [StreamEvent(
                orjson.dumps({**self._base, "choices": [], "usage": openai_usage(usage)}),
                relay=self._forward_usage, usage=usage)]
        if kind == "error":
            fields = upstream_error_fields(event.get("error"), self._secret)
            self.error = {name: value for name, value in fields.items() if value is not None}
            body = stream_error_body(self._provider, self.error)
            return [StreamEvent(orjson.dumps({"error": body}), error=body)]
        return []  # ping, and event types added after this was written

    def _take_usage(self, usage: Any) -> None:
        merge_usage(self._usage, usage)


def parse_event(provider: str, data: bytes) -> tuple[dict[str, Any], str]:
    """An Anthropic stream event's JSON and its `type`; StreamBroken when unreadable."""
    try:
        event = orjson.loads(data)
        return event, event["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise StreamBroken(f"{provider} sent an unreadable stream event",
                           code="bad_upstream_response") from None


def merge_usage(into: dict[str, Any], usage: Any) -> None:
    """Take a `usage` object of message_start or message_delta into `into`: message_delta's
    counts are cumulative, so a later value replaces an earlier one."""
    if isinstance(usage, dict):
        into.update({k: v for k, v in usage.items() if v is not None})


def stream_error_body(provider: str, error: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic stream `error` event's error, in OpenAI's error shape."""
    kind = str(error.get("type") or "api_error")
    message = str(error.get("message") or "stream failed")
    return {"message": f"{provider} stream failed ({kind}): {message}",
            "type": "upstream_error",
            "code": "upstream_overloaded" if kind == "overloaded_error"
            else "upstream_stream_error"}
