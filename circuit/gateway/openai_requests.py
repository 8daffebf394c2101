"""Reading the bodies of the OpenAI doors beside chat: embeddings and legacy completions.

As for chat (chat_request.py), only what the gateway relies on is checked — the model, the
input it bounds the cost of, `stream` — and the client's bytes go upstream as sent. The input
of both is one of OpenAI's four shapes: a string, a list of strings, a list of token ids, a
list of lists of token ids; anything else is refused here, in OpenAI's words, before it can
cost a reservation or an upstream call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from circuit.errors import InvalidRequest
from circuit.gateway.chat_request import json_object

#: OpenAI's own limit on the items of one embeddings request (and of a completions prompt).
MAX_INPUTS = 2048
ENCODING_FORMATS = ("float", "base64")


@dataclass(slots=True)
class DoorRequest:
    """A request of a passthrough door: its JSON, its bytes, and what the gateway read."""

    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool = False


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise _invalid("Missing required parameter: 'model'.", "model",
                       "missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("Invalid type for 'model': expected a non-empty string.", "model")
    return model


def check_input(value: Any, name: str) -> None:
    """`value` is one of the four input shapes: a non-empty string, or a non-empty list (of at
    most MAX_INPUTS) of non-empty strings, of token ids, or of non-empty lists of token ids."""
    if value is None:
        raise _invalid(f"Missing required parameter: '{name}'.", name,
                       "missing_required_parameter")
    if isinstance(value, str):
        if not value:
            raise _invalid(f"'{name}' cannot be an empty string.", name, "invalid_value")
        return
    if not isinstance(value, list):
        raise _invalid(f"Invalid type for '{name}': expected a string, an array of strings, "
                       "an array of integers or an array of arrays of integers.", name)
    if not value:
        raise _invalid(f"'{name}' cannot be an empty array.", name, "invalid_value")
    if len(value) > MAX_INPUTS:
        raise _invalid(f"'{name}' has {len(value)} items; at most {MAX_INPUTS} are allowed "
                       "in one request.", name, "array_above_max_length")
    first = value[0]
    if isinstance(first, str):
        kind, ok = "strings", (lambda item: isinstance(item, str) and item != "")
    elif _token(first):
        kind, ok = "integers", _token
    elif isinstance(first, list):
        kind, ok = "arrays of integers", _tokens
    else:
        kind, ok = "strings", (lambda item: False)
    for index, item in enumerate(value):
        if not ok(item):
            raise _invalid(f"Invalid '{name}[{index}]': every item must be one of the array's "
                           f"{kind} (non-empty, token ids >= 0).", f"{name}[{index}]")


def _token(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and item >= 0


def _tokens(item: Any) -> bool:
    return isinstance(item, list) and bool(item) and all(_token(token) for token in item)


def parse_embeddings_request(raw: bytes) -> DoorRequest:
    """Check an embeddings request's `model`, `input`, `encoding_format` and `dimensions`."""
    body = json_object(raw, "embeddings")
    model = _model(body)
    check_input(body.get("input"), "input")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODING_FORMATS:
        raise _invalid(f"Invalid value for 'encoding_format': {encoding!r}; expected 'float' "
                       "or 'base64'.", "encoding_format", "invalid_value")
    dimensions = body.get("dimensions")
    if dimensions is not None and not (_token(dimensions) and dimensions >= 1):
        raise _invalid("Invalid 'dimensions': expected an integer >= 1.", "dimensions")
    if body.get("stream") not in (None, False):
        raise _invalid("Embeddings cannot be streamed: remove 'stream'.", "stream",
                       "unsupported_parameter")
    return DoorRequest(body=body, raw=raw, model=model)


def parse_completions_request(raw: bytes) -> DoorRequest:
    """Check a legacy completions request's `model`, `prompt` and `stream`; the output knobs
    (`max_tokens`, `n`, `best_of`) are read leniently by the bound, as for chat."""
    body = json_object(raw, "completions")
    model = _model(body)
    check_input(body.get("prompt"), "prompt")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("Invalid type for 'stream': expected a boolean.", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid("Invalid type for 'stream_options': expected an object.",
                       "stream_options")
    return DoorRequest(body=body, raw=raw, model=model, stream=bool(stream))


def _invalid(message: str, param: str, code: str = "invalid_type") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)
