"""Readers of the OpenAI answers the gateway passes through as they are (circuit.wire's
WireReader): embeddings, legacy completions, and the answers that bill nothing.

Each reads only what accounting needs. An embeddings answer can be tens of megabytes of
vectors with its `usage` at the end, so its usage is read from the tail: the answer is never
parsed whole unless it is small and the tail did not hold it.
"""

from __future__ import annotations

from typing import Any

import orjson

from circuit.errors import StreamBroken, UpstreamFailed
from circuit.providers.openai_wire import OpenAIEvents, usage_from_openai
from circuit.providers.upstream_errors import safe_error_event, upstream_error_fields
from circuit.wire import Completion, StreamEvent, Transform, Usage

#: An answer up to this size without usage in its tail is parsed whole to find it.
_WHOLE_PARSE_BYTES = 1024 * 1024
#: `}` tried after `"usage"`: enough for a usage object with nested details.
_USAGE_CLOSINGS = 8


def _unreadable(what: str) -> UpstreamFailed:
    return UpstreamFailed(f"the upstream sent an unreadable {what} answer",
                          code="bad_upstream_response")


def tail_usage(body: bytes) -> Usage | None:
    """The `usage` object of an OpenAI answer that ends with it (embeddings do), read from the
    last `"usage"` on; None when it is not there or not readable."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return None
    start = body.find(b"{", at)
    end = start
    for _ in range(_USAGE_CLOSINGS):
        end = body.find(b"}", end + 1)
        if start < 0 or end < 0:
            return None
        try:
            usage = orjson.loads(body[start:end + 1])
        except orjson.JSONDecodeError:
            continue
        return usage_from_openai(usage)
    return None


class EmbeddingsReader:
    """Reads an embeddings answer's usage (`usage.prompt_tokens`); the vectors are not read."""

    def completion(self, body: bytes) -> Completion:
        trimmed = body.strip()
        if not (trimmed.startswith(b"{") and trimmed.endswith(b"}")):
            raise _unreadable("embeddings")
        usage = tail_usage(trimmed)
        if usage is None and len(trimmed) <= _WHOLE_PARSE_BYTES:
            try:
                parsed = orjson.loads(trimmed)
            except orjson.JSONDecodeError:
                raise _unreadable("embeddings") from None
            if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
                raise _unreadable("embeddings")
            usage = usage_from_openai(parsed.get("usage"))
        return Completion(body=body, usage=usage)

    def transform(self, secret: str | None = None) -> Transform:
        raise UpstreamFailed("embeddings are not streamed")


class FreeReader:
    """Reads an answer that bills no tokens (a stored completion, a model, a file list): any
    bytes, charged nothing."""

    def completion(self, body: bytes) -> Completion:
        return Completion(body=body, usage=Usage())

    def transform(self, secret: str | None = None) -> Transform:
        raise UpstreamFailed("this endpoint is not streamed")


class CompletionsReader:
    """Reads a legacy completions answer (`text_completion`): usage, text, finish reason."""

    def __init__(self, forward_usage: bool) -> None:
        self._forward_usage = forward_usage

    def completion(self, body: bytes) -> Completion:
        try:
            parsed = orjson.loads(body)
            choices = parsed["choices"]
            text = "".join(c.get("text") or "" for c in choices)
            finish = choices[0].get("finish_reason") if choices else None
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise _unreadable("completions") from None
        return Completion(body=body, usage=usage_from_openai(parsed.get("usage")),
                          finish_reason=finish, text=text)

    def transform(self, secret: str | None = None) -> Transform:
        """`secret`: redacted from any event that quotes it (OpenAIEvents does)."""
        return CompletionsEvents(self._forward_usage, secret)


class CompletionsEvents(OpenAIEvents):
    """A legacy completions stream: `text_completion` chunks whose choices carry `text`,
    a usage chunk with no choices when asked for, then `[DONE]`."""

    __slots__ = ()

    def event(self, data: bytes, chunk: Any) -> StreamEvent:
        if not isinstance(chunk, dict):
            raise StreamBroken("upstream sent an event that is not a JSON object",
                               code="bad_upstream_response")
        if "error" in chunk:
            return StreamEvent(safe_error_event(data, chunk, self._secret),
                               error=upstream_error_fields(chunk["error"], self._secret))
        usage = usage_from_openai(chunk.get("usage")) if chunk.get("usage") else None
        choices = chunk.get("choices")
        if not choices:
            return StreamEvent(data, relay=self._forward_usage or usage is None, usage=usage)
        pieces, outputs, finish = [], 0, None
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            text = choice.get("text")
            if isinstance(text, str) and text:
                pieces.append(text)
                outputs += 1
            finish = choice.get("finish_reason") or finish
        return StreamEvent(data, text="".join(pieces), outputs=outputs, usage=usage,
                           finish_reason=finish)
