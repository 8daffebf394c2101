"""Reading a chat-completion request: only the fields the gateway needs, checked cheaply.

Only what the gateway itself relies on is checked (`model`, `messages`, `stream`,
`stream_options`); everything else is the upstream's to judge, as it would be without Circuit.

Pydantic validation costs 50–500 µs a request on this path (docs/design.md); the body is parsed once
with orjson and forwarded as the client sent it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from circuit.errors import InvalidRequest, PayloadTooLarge


@dataclass(slots=True)
class ChatRequest:
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    messages: list[Any]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to pass `limit` bytes; a client
    gone before its body was whole is ClientDisconnect.

    Read from the ASGI messages directly: starlette's `Request.stream()` is an async
    generator, two more steps of it for a body that comes in one message, as most do."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body of {declared} bytes is over the {limit}-byte limit")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is over the {limit}-byte limit")
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A request body that must be one JSON object (`what`: the kind of request, for the
    message of an empty body)."""
    if not raw.strip():
        raise InvalidRequest(f"The request body is empty; send a JSON {what} request",
                             code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg}",
                             code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object", code="invalid_json")
    return body


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Parse and check the fields the gateway relies on; InvalidRequest says what is wrong."""
    body = json_object(raw, "chat-completion")
    model = body.get("model")
    if model is None:
        raise InvalidRequest("Missing required parameter: 'model'",
                             code="missing_required_parameter", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string", code="invalid_type",
                             param="model")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'",
                             code="missing_required_parameter", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", code="invalid_type",
                             param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"'messages[{index}]' must be an object with a string 'role'",
                                 code="invalid_type", param=f"messages[{index}]")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", code="invalid_type", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object", code="invalid_type",
                             param="stream_options")
    # Output knobs (`max_tokens`, `n`, …) are the upstream's to judge: the budget reads them
    # leniently, as the most lenient upstream would (accounting.bound).
    return ChatRequest(body=body, raw=raw, model=model, stream=bool(stream), messages=messages)
