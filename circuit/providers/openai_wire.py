"""OpenAI's chat-completions wire format, read: usage, the text an answer paid for, and each
stream chunk as a neutral StreamEvent — parsed once, here, for every provider that speaks it."""

from __future__ import annotations

from typing import Any

import orjson

from circuit.errors import StreamBroken
from circuit.providers.sse import FrameReader, SSEEvent
from circuit.providers.upstream_errors import (
    WINDOW,
    redact,
    safe_error_event,
    upstream_error_fields,
)
from circuit.wire import StreamEvent, Usage

#: No single request uses more tokens than this; a larger count is an upstream's mistake.
_MAX_TOKENS = 100_000_000
_DONE = b"[DONE]"


def usage_from_openai(usage: Any) -> Usage | None:
    """Usage from an OpenAI `usage` object, or None when it is absent or malformed."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details") or {}
    output_details = usage.get("completion_tokens_details") or {}
    if not isinstance(details, dict) or not isinstance(output_details, dict):
        return None
    counts = (usage.get("prompt_tokens"), usage.get("completion_tokens"),
              details.get("cached_tokens"), details.get("cache_write_tokens"),
              output_details.get("reasoning_tokens"))
    for count in counts:
        # `type is int`: not a bool, nor a float. Checked in the loop, not a call a count:
        # this runs for every answer.
        if count is not None and (type(count) is not int or not 0 <= count <= _MAX_TOKENS):
            return None  # counted locally instead: a wild count must not skew the ledger
    prompt, completion, cached, written, reasoning = counts
    # cache_write_tokens: what the Anthropic provider reports in OpenAI's shape (as
    # OpenRouter names it), so streamed cache writes are priced as cache writes. Positional
    # (circuit/wire.py StreamEvent says why).
    return Usage(prompt or 0, completion or 0, cached or 0, written or 0, "provider",
                 reasoning or 0)


def reasoning_of(message: dict) -> str | None:
    """The reasoning text of a chat message or stream delta, as DeepSeek and vLLM send it
    (`reasoning_content`; `reasoning` in newer vLLM and OpenRouter), or None."""
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def output_parts(message: dict) -> list[str]:
    """Everything of one choice's message (or stream delta) that its output tokens paid for:
    the reasoning text, the text, a refusal, and the name and arguments of each tool call (and
    of a legacy function_call); the non-empty strings only."""
    parts = [reasoning_of(message), message.get("content"), message.get("refusal")]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts += [function.get("name"), function.get("arguments")]
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        parts += [legacy.get("name"), legacy.get("arguments")]
    return [part for part in parts if isinstance(part, str) and part]


def output_text(message: dict) -> str:
    """The output text of one choice's message (see output_parts)."""
    return "".join(output_parts(message))


def chunk_event(data: bytes, chunk: Any, forward_usage: bool,
                secret: str | None = None) -> StreamEvent:
    """The StreamEvent of one parsed `chat.completion.chunk` (`data` is what is relayed; an
    error event is redacted of `secret` as decoded)."""
    if not isinstance(chunk, dict):
        raise StreamBroken("upstream sent an event that is not a JSON object",
                           code="bad_upstream_response")
    if "error" in chunk:
        return StreamEvent(safe_error_event(data, chunk, secret),
                           error=upstream_error_fields(chunk["error"], secret))
    choices = chunk.get("choices")
    usage = usage_from_openai(chunk.get("usage")) if chunk.get("usage") else None
    if not choices:
        # The usage-only chunk the gateway asked for: hidden from a client that did not ask.
        return StreamEvent(data, relay=forward_usage or usage is None, usage=usage)
    pieces: list[str] = []
    outputs = 0
    finish = None
    # Every choice's output is billed (`n` > 1 streams them interleaved).
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            # Most deltas are text alone (a role beside it): read without a call.
            if type(content) is str and (len(delta) == 1 or len(delta) == 2 and "role" in delta):
                if content:
                    pieces.append(content)
                    outputs += 1
            elif parts := output_parts(delta):
                pieces += parts
                outputs += 1
        if choice.get("finish_reason"):
            finish = choice["finish_reason"]
    # Positional, as on every per-event path (circuit/wire.py StreamEvent says why).
    return StreamEvent(data, None, True, "".join(pieces), outputs, usage, finish)


class OpenAIEvents(FrameReader):
    """Reads an OpenAI stream's `data:` values into StreamEvents (see upstream_stream)."""

    __slots__ = ("_forward_usage", "_secret", "_ends", "done", "failed")

    def __init__(self, forward_usage: bool, secret: str | None = None) -> None:
        self._forward_usage = forward_usage
        # An upstream's mid-stream error may quote the key; events carrying its head or tail
        # are redacted whole (two byte searches an event).
        self._secret = secret if secret and len(secret) >= 2 * WINDOW else None
        self._ends = (secret[:WINDOW].encode(), secret[-WINDOW:].encode()) \
            if self._secret else None
        self.done = False  # [DONE] seen: the stream ended well
        self.failed = False  # an error event: nothing worth reading follows

    def feed(self, data: bytes, name: bytes | None = None) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        self.feed_read([SSEEvent(data, name)], out)
        return out

    def feed_read(self, frames: list[SSEEvent], out: list[StreamEvent]) -> None:
        """`feed` of each event of one read, into `out`, up to [DONE] or an error event (`out`
        keeps the events before one that raises). One call a read: the calls an event were
        most of reading a text delta."""
        ends = self._ends
        plain = type(self).event is OpenAIEvents.event  # a subclass reads its own shape
        for frame in frames:
            data = frame.data
            if data == _DONE:
                self.done = True
                return
            # quotes_secret's test, inline (it runs for every event of a keyed upstream).
            if ends is not None and (data.partition(ends[0])[1] or data.partition(ends[1])[1]):
                data = redact(data.decode("utf-8", "replace"), self._secret).encode()
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise StreamBroken("upstream sent an event that is not JSON",
                                   code="bad_upstream_response") from None
            # chunk_event's, inline for the usual chunk: one choice, a text delta, no usage.
            if plain and type(chunk) is dict and "error" not in chunk and not chunk.get("usage"):
                choices = chunk.get("choices")
                if type(choices) is list and len(choices) == 1:
                    choice = choices[0]
                    delta = choice.get("delta") if type(choice) is dict else None
                    if type(delta) is dict:
                        content = delta.get("content")
                        if type(content) is str and (len(delta) == 1 or len(delta) == 2
                                                     and "role" in delta):
                            out.append(StreamEvent(data, None, True, content,
                                                   1 if content else 0, None,
                                                   choice.get("finish_reason") or None))
                            continue
            event = self.event(data, chunk)
            out.append(event)
            if event.error is not None:
                self.failed = True
                return

    def event(self, data: bytes, chunk: Any) -> StreamEvent:
        """The StreamEvent of one parsed chunk (a subclass reads another chunk shape)."""
        return chunk_event(data, chunk, self._forward_usage, self._secret)


def wants_usage(body: dict[str, Any]) -> bool:
    """Whether the client itself asked for the usage chunk (`stream_options.include_usage`)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class PayloadEvents:
    """The EventStream of a provider that makes its own OpenAI chunks (the mock): each list
    of `data:` values it yields, read into StreamEvents as an upstream's would be."""

    def __init__(self, payloads: Any, transform: OpenAIEvents) -> None:
        self._payloads = payloads  # an async iterator of list[bytes], with aclose()
        self._iterator = aiter(payloads)
        self._transform = transform

    def __aiter__(self) -> PayloadEvents:
        return self

    async def __anext__(self) -> list[StreamEvent]:
        payloads = await anext(self._iterator)
        return [event for data in payloads for event in self._transform.feed(data)]

    async def aclose(self) -> None:
        await self._payloads.aclose()
