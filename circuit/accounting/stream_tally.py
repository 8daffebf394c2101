"""StreamTally: what a relayed stream said, gathered as it passes, without holding it up."""

from __future__ import annotations

import orjson

from circuit.accounting.bound import utf8_len
from circuit.accounting.output_guard import OutputGuard
from circuit.accounting.usage import Usage
from circuit.providers.openai import usage_from_openai


class MalformedChunk(ValueError):
    """An upstream event that is not a JSON chat-completion chunk."""


class StreamTally:
    """Observes `chat.completion.chunk` payloads: text, finish reason, usage, upstream errors."""

    __slots__ = ("pieces", "usage", "finish_reason", "error", "guard", "_forward_usage")

    def __init__(self, client_wants_usage: bool, guard: OutputGuard | None = None) -> None:
        self.pieces: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error: dict | None = None
        #: Watches the output against what the request reserved (None: no limit to keep).
        self.guard = guard
        self._forward_usage = client_wants_usage

    def observe(self, payload: bytes) -> bool:
        """Take in one payload; return whether the client should receive it."""
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise MalformedChunk("upstream sent an event that is not JSON") from None
        if not isinstance(chunk, dict):
            raise MalformedChunk("upstream sent an event that is not a JSON object")
        if "error" in chunk:
            self.error = chunk["error"] if isinstance(chunk["error"], dict) else {
                "message": str(chunk["error"])}
            return True
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if usage:
            self.usage = usage_from_openai(usage)
        if choices:
            before = len(self.pieces)
            events = 0
            # Every choice's output is billed (`n` > 1 streams them interleaved).
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict) and self._take(delta):
                    events += 1
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
            if self.guard is not None and events:
                self.guard.add(events, sum(utf8_len(p) for p in self.pieces[before:]))
            return True
        # The usage-only chunk the gateway asked for: hidden from a client that did not ask.
        return self._forward_usage or not usage

    def _take(self, delta: dict) -> bool:
        """Keep a delta's output text; whether it had any."""
        before = len(self.pieces)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.pieces.append(content)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for part in (function.get("name"), function.get("arguments")):
                    if isinstance(part, str) and part:
                        self.pieces.append(part)
        return len(self.pieces) > before

    @property
    def text(self) -> str:
        return "".join(self.pieces)

