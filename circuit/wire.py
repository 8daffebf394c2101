"""Wire-neutral types: what providers hand the gateway, whatever their upstream speaks.

Every layer imports these and nothing above them: a provider turns its upstream's answer into a
`Completion` or a stream of `StreamEvent`s (the bytes to relay, and what it parsed from them:
text, usage, finish reason, error), and accounting only adds those up — no JSON is parsed twice
for one chunk, and no module of accounting knows a wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

UsageSource = Literal["provider", "local"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one request. `input_tokens` includes cached and cache-write tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    source: UsageSource = "provider"
    #: Of `output_tokens`, those spent thinking: billed, but not in the answer's text.
    reasoning_tokens: int = 0


@dataclass(slots=True)
class Call:
    """One upstream call: the client's request, aimed at one upstream model."""

    body: dict[str, Any]  # the client's JSON body, parsed
    raw: bytes  # the client's body as sent: forwarded untouched when nothing must change
    model: str  # upstream model name
    stream: bool
    request_id: str
    #: The body is a door's translation (Messages or Responses to chat), not the client's:
    #: the provider writes it in its upstream's dialect (`max_completion_tokens` for OpenAI).
    translated: bool = False


@dataclass(slots=True)
class Completion:
    """A whole (non-streamed) answer, in the wire format the client speaks."""

    body: bytes
    usage: Usage | None  # None when the upstream reported none
    finish_reason: str | None = None
    text: str = ""  # everything the output tokens paid for, for a local count


@dataclass(slots=True)
class StreamEvent:
    """One event of a stream: the `data` to relay, and what the provider read in it.

    Made once per event, so the per-event paths pass its fields by position, in this order:
    in CPython 3.11 keyword arguments cost a dataclass' `__init__` ~1,200 instructions more a
    call (callgrind), as much as reading a text delta's JSON."""

    data: bytes  # one SSE `data:` value, as the client is to receive it
    #: Its SSE `event:` name, for a door whose frames are named (Anthropic's, Responses').
    event: bytes | None = None
    relay: bool = True  # False: not for this client (the usage chunk it did not ask for)
    text: str = ""  # output text the event carried (content, tool names and arguments)
    outputs: int = 0  # choices with new output in it (each at least one token)
    usage: Usage | None = None
    finish_reason: str | None = None
    error: dict[str, str | None] | None = None  # an upstream error event, already redacted


class EventStream(Protocol):
    """An open upstream stream: each iteration is the events of one network read, so the
    relay passes each read on in one write."""

    def __aiter__(self) -> AsyncIterator[list[StreamEvent]]: ...

    async def aclose(self) -> None:
        """Stop reading and drop the upstream connection (which cancels the upstream call)."""


class Transform(Protocol):
    """An upstream wire format's events, read into StreamEvents one `data:` value (and its
    `event:` name, None when the frame had none) at a time."""

    #: The stream's own end marker was seen ([DONE], message_stop, response.completed).
    done: bool
    #: An error event was seen: the upstream sends nothing worth reading after it.
    failed: bool

    def feed(self, data: bytes, name: bytes | None = None) -> list[StreamEvent]:
        """The events of one SSE event; StreamBroken for one that cannot be read."""

    def feed_read(self, frames: list[Any], out: list[StreamEvent]) -> None:
        """`feed` of each SSE event of one network read (anything with `data` and `event`),
        appended to `out`, up to the stream's end or its error event. On StreamBroken, `out`
        holds the events before the unreadable one, so they can still be relayed."""


@dataclass(slots=True)
class Passthrough:
    """A request forwarded in the upstream's own wire format, by a door that speaks it."""

    path: str  # under the provider's base URL (OpenAI: "/responses"; Anthropic: "/v1/messages")
    body: bytes  # the client's bytes, unless the door had to change something (the model)
    stream: bool
    request_id: str
    #: Client headers the format needs upstream (anthropic-version, anthropic-beta).
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"


class WireReader(Protocol):
    """How a door reads the answers of the format it passes through."""

    def completion(self, body: bytes) -> Completion:
        """Usage and text of a whole answer (UpstreamFailed when it cannot be read)."""

    def transform(self, secret: str | None = None) -> Transform:
        """A fresh reader of one stream's events; `secret` (the provider's key) is redacted
        from any event that quotes it."""
