"""The provider contract: one call in, the client's wire format out.

A provider speaks whatever its upstream speaks and hands the gateway the neutral types of
circuit/wire.py: a `Completion` (a `chat.completion` JSON body) or an `EventStream` of
`StreamEvent`s (each a `chat.completion.chunk` to relay, with the text, usage, finish reason or
error the provider read in it). Failures are raised as `circuit.errors.UpstreamError`
subclasses: before the first byte from `complete`/`open_stream` (so the gateway may retry or
fall back), after it as `StreamBroken`/`UpstreamTimeout` from the stream. Providers know
nothing of keys or budgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from circuit.wire import Call, Completion, EventStream, Passthrough, WireReader


class Provider(Protocol):
    name: str
    #: The wire format `complete` and `open_stream` speak upstream ('chat', 'messages').
    wire: str
    #: Whether the provider reports usage (`stream_options.include_usage`) when asked.
    reports_stream_usage: bool
    #: Whether the upstream serves OpenAI's Responses API (`forward` to `/responses`); the
    #: Responses door translates to chat completions for one that does not.
    speaks_responses: bool

    async def start(self) -> None:
        """Open pools; called once inside the running event loop."""

    async def aclose(self) -> None:
        """Close pools."""

    def takes(self, body: dict) -> None:
        """Raise InvalidRequest (naming the field) when this provider cannot express a chat
        body upstream: checked before any call, so a route's other targets may take it."""

    async def complete(self, call: Call) -> Completion: ...

    async def open_stream(self, call: Call) -> EventStream: ...

    async def forward(self, request: Passthrough, reader: WireReader) -> Completion | EventStream:
        """Send a request in the upstream's own format as it is (only the provider's key and
        headers added), and read its answer with the door's `reader`. A provider that speaks
        no such format raises UpstreamRejected (404)."""

    async def list_models(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect; for the answer to begin; of silence between stream events."""

    connect: float = 5.0
    first_byte: float = 120.0
    idle: float = 60.0


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """Bytes: of a whole (non-streamed) upstream answer; of one event of a stream."""

    response: int = 32 * 1024 * 1024
    event: int = 4 * 1024 * 1024
