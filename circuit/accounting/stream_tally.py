"""StreamTally: what a relayed stream said, added up from its events as they pass.

The provider has read each event already (circuit/wire.py StreamEvent); the tally only keeps
the text (for a partial record and a local count), the latest usage, the finish reason and an
error, and feeds the output guard.
"""

from __future__ import annotations

from circuit.accounting.bound import utf8_len
from circuit.accounting.output_guard import OutputGuard
from circuit.wire import StreamEvent, Usage


class StreamTally:
    """Adds up one stream's events."""

    __slots__ = ("pieces", "usage", "finish_reason", "error", "guard")

    def __init__(self, guard: OutputGuard | None = None) -> None:
        self.pieces: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error: dict | None = None
        #: Watches the output against what the request reserved (None: no limit to keep).
        self.guard = guard

    def observe(self, event: StreamEvent) -> bool:
        """Take in one event; return whether the client should receive it."""
        if event.error is not None:
            self.error = event.error
        text = event.text
        if text:
            self.pieces.append(text)
            if self.guard is not None:
                # utf8_len's test inline: this runs for every text event.
                self.guard.add(event.outputs, len(text) if text.isascii() else utf8_len(text))
        if event.usage is not None:
            self.usage = event.usage
        if event.finish_reason:
            self.finish_reason = event.finish_reason
        return event.relay

    @property
    def text(self) -> str:
        return "".join(self.pieces)
