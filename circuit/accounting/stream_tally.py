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

    def observe(self, events: list[StreamEvent]) -> list[StreamEvent]:
        """Take in the events of one read; return those the client should receive. One call a
        read, not an event: a call an event was a tenth of a stream's own cost."""
        relayed = []
        outputs = size = 0
        for event in events:
            if event.error is not None:
                self.error = event.error
            text = event.text
            if text:
                self.pieces.append(text)
                outputs += event.outputs
                # utf8_len's test inline: this runs for every text event.
                size += len(text) if text.isascii() else utf8_len(text)
            if event.usage is not None:
                self.usage = event.usage
            if event.finish_reason:
                self.finish_reason = event.finish_reason
            if event.relay:
                relayed.append(event)
        if size and self.guard is not None:
            self.guard.add(outputs, size)
        return relayed

    @property
    def text(self) -> str:
        return "".join(self.pieces)
