"""Doors: how each API the gateway answers speaks to its clients — its error shape and its
stream framing — declared once per door, so every typed CircuitError is mapped to a door's
shape here and nowhere else.

    Door            error body, error status, frames of a stream, its end, its error event
    CHAT            OpenAI: {"error": {...}}; `data: …` frames, `data: [DONE]`
    MESSAGES        Anthropic: {"type": "error", "error": {type, message}};
                    `event: <name>` + `data: …` frames, no end marker, `event: error` at a break

A door's flow answers an error with `error_response(error, door)` (circuit.gateway.responses)
and relays a stream with `StreamRelay(..., door=door)` (circuit.gateway.relay), once the error
is in the door's words (`worded`: a budget refusal names the door's own output limit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from circuit.errors import CircuitError, QuotaExceeded, ServiceUnavailable
from circuit.wire import StreamEvent


def data_frames(events: list[StreamEvent]) -> bytes:
    """Events as bare `data:` frames (OpenAI chat completions), in one join: a stream's reads
    are framed a read at a time, not an event at a time (a call an event, 22 a stream)."""
    if not events:
        return b""
    return b"data: " + b"\n\ndata: ".join([event.data for event in events]) + b"\n\n"


def named_frames(events: list[StreamEvent]) -> bytes:
    """Events as `event: <name>` + `data:` frames, as Anthropic (and OpenAI Responses) send
    them: for an upstream's canonical frames (one data line, LF endings) the very bytes it sent."""
    parts: list[bytes] = []
    for event in events:
        # A multi-line value: one `data:` line each, as SSE requires. No `in` test first:
        # replace gives back the very object when there is no LF, for less than bytes' `in`
        # costs (upstream_errors.quotes_secret says why).
        data = event.data.replace(b"\n", b"\ndata: ")
        name = event.event
        if name is None:
            parts += (b"data: ", data, b"\n\n")
        else:
            parts += (b"event: ", name, b"\ndata: ", data, b"\n\n")
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Door:
    """How one API answers: the shape and status of its errors, the frames of its streams."""

    name: str  # the record's `api` column: 'chat', 'messages', 'responses', …
    error_body: Callable[[CircuitError], dict]
    error_status: Callable[[CircuitError], int]
    #: The StreamEvents of one read as the bytes of their SSE frames.
    frames: Callable[[list[StreamEvent]], bytes]
    #: What follows the last event of a stream that ended well (b"" for none).
    end: bytes
    #: The bytes that end a stream broken after its first byte: the door's error event
    #: (and its end marker, when the door has one), given how many events were relayed.
    stream_error: Callable[[CircuitError, int], bytes]


# -- OpenAI -----------------------------------------------------------------------------------

def openai_error_body(error: CircuitError) -> dict:
    """OpenAI's `{"error": {message, type, code[, param]}}` (the breaker's 503 is fixed)."""
    return error.body()


def http_status(error: CircuitError) -> int:
    return error.status


_DONE = b"data: [DONE]\n\n"


def _openai_stream_error(error: CircuitError, relayed: int) -> bytes:
    return b"data: " + orjson.dumps(error.body()) + b"\n\n" + _DONE


CHAT = Door("chat", openai_error_body, http_status, data_frames, _DONE, _openai_stream_error)


# -- Anthropic --------------------------------------------------------------------------------

#: Anthropic's error type for each status the gateway answers with.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

#: Upstream codes that mean the upstream was overloaded (Anthropic's 529).
_OVERLOADED = frozenset({"upstream_overloaded"})


def anthropic_status(error: CircuitError) -> int:
    """The status on the Messages door: as everywhere, but an upstream's overload stays the
    529 Anthropic itself answers, so the SDK raises its OverloadedError."""
    return 529 if error.code in _OVERLOADED else error.status


def anthropic_error_type(error: CircuitError) -> str:
    status = anthropic_status(error)
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def anthropic_error_body(error: CircuitError) -> dict:
    """Anthropic's `{"type": "error", "error": {"type", "message"}}`; the breaker's 503 keeps
    its fixed message, "Upstream provider temporarily unavailable"."""
    message = error.message if not isinstance(error, ServiceUnavailable) \
        else "Upstream provider temporarily unavailable"
    return {"type": "error", "error": {"type": anthropic_error_type(error), "message": message}}


def _anthropic_stream_error(error: CircuitError, relayed: int) -> bytes:
    # Mid-stream, Anthropic itself only sends these two: an overload, or anything else.
    kind = "overloaded_error" if anthropic_status(error) in (503, 529) else "api_error"
    body = {"type": "error", "error": {"type": kind, "message": error.message}}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


MESSAGES = Door("messages", anthropic_error_body, anthropic_status, named_frames, b"",
                _anthropic_stream_error)


def anthropic_client(path: str, headers: Mapping[str, str]) -> bool:
    """Whether a request the router answers itself (an unknown path, a method a path does not
    take, a body FastAPI refused) comes from an Anthropic client: a path under /v1/messages,
    or the `anthropic-version` header the Anthropic SDK always sends."""
    return path == "/v1/messages" or path.startswith("/v1/messages/") \
        or "anthropic-version" in headers


# -- OpenAI Responses -------------------------------------------------------------------------

def _responses_stream_error(error: CircuitError, relayed: int) -> bytes:
    # The spec's ResponseErrorEvent (the SDK yields it as an event of type "error"), numbered
    # after the last event the client got: a stream's events are numbered from 0, so that is
    # how many were relayed (not read: a read the output guard cut was never sent).
    event = {"type": "error", "code": error.code, "message": error.message,
             "param": error.param, "sequence_number": relayed}
    return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


#: OpenAI's errors, named frames, no end marker.
RESPONSES = Door("responses", openai_error_body, http_status, named_frames, b"",
                 _responses_stream_error)


# -- words ------------------------------------------------------------------------------------

#: How a budget refusal tells the client to reserve less, by door (`Door.name`): with the
#: door's own output limit. A door absent has none to limit (embeddings).
RESERVE_LESS = {
    "chat": "Send max_completion_tokens or max_tokens to reserve less.",
    "completions": "Send max_tokens to reserve less.",
    "responses": "Send max_output_tokens to reserve less.",
    "messages": "Send a lower max_tokens to reserve less.",  # required there: always sent
}


def worded(error: CircuitError, door: Door) -> CircuitError:
    """The error in the door's words."""
    if isinstance(error, QuotaExceeded):
        return error.advised(RESERVE_LESS.get(door.name))
    return error
