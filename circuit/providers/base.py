"""The provider contract: one call in, OpenAI-shaped answers out.

A provider speaks whatever its upstream speaks and hands the gateway OpenAI wire format: a
`Completion` (a `chat.completion` JSON body) or a `ChunkStream` of `chat.completion.chunk`
payloads. Failures are raised as `circuit.errors.UpstreamError` subclasses: before the first
byte from `complete`/`open_stream` (so the gateway may retry or fall back), after it as
`StreamBroken`/`UpstreamTimeout` from the stream. Providers know nothing of keys or budgets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from circuit.accounting.usage import Usage


@dataclass(slots=True)
class ChatCall:
    """One upstream call: the client's request, aimed at one upstream model."""

    body: dict[str, Any]  # the client's JSON body, parsed
    raw: bytes  # the client's body as sent: forwarded untouched when nothing must change
    model: str  # upstream model name
    stream: bool
    request_id: str


@dataclass(slots=True)
class Completion:
    """A whole (non-streamed) answer in OpenAI's `chat.completion` shape."""

    body: bytes
    usage: Usage | None  # None when the upstream reported none
    finish_reason: str | None = None
    text: str = ""  # the answer's text, for local counting when usage is missing


class ChunkStream(Protocol):
    """An open upstream stream. Iterating yields lists of `chat.completion.chunk` JSON payloads
    (each one SSE `data:` value, without `[DONE]`), one list per network read, so the relay can
    pass on each read in one write."""

    def __aiter__(self) -> AsyncIterator[list[bytes]]: ...

    async def aclose(self) -> None:
        """Stop reading and release the upstream connection (cancels the upstream call)."""


class Provider(Protocol):
    name: str
    #: Whether the provider reports usage (`stream_options.include_usage`) when asked.
    reports_stream_usage: bool

    async def start(self) -> None:
        """Open pools; called once inside the running event loop."""

    async def aclose(self) -> None:
        """Close pools."""

    async def complete(self, call: ChatCall) -> Completion: ...

    async def open_stream(self, call: ChatCall) -> ChunkStream: ...

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
