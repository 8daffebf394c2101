"""Reading a Responses request: only the fields the gateway needs, checked cheaply.

The gateway relies on `model`, `stream`, the shape of `input` and `instructions` (to bound and
count them), and on knowing whether the request needs OpenAI's server-side state
(`previous_response_id`, a `conversation`, `background`, stored items and prompts), which only
a target that speaks Responses itself can serve. Everything else is the upstream's to judge,
and the body is forwarded as the client sent it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from circuit.errors import InvalidRequest
from circuit.gateway.chat_request import json_object


@dataclass(slots=True)
class ResponsesRequest:
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    #: Why the request needs OpenAI's stored state (None: it is self-contained).
    stateful: str | None

    def messages(self) -> list[Any]:
        """The prompt as chat-like messages, for a local count when the upstream gives no
        usage (the counter reads every string of them)."""
        body = self.body
        messages: list[Any] = []
        if body.get("instructions") is not None:
            messages.append({"role": "system", "content": body["instructions"]})
        items = body.get("input")
        if isinstance(items, str):
            messages.append({"role": "user", "content": items})
        elif isinstance(items, list):
            messages.extend(items)
        for name in ("tools", "text"):
            if body.get(name) is not None:
                messages.append({"role": "system", "content": body[name]})
        return messages


def parse_responses_request(raw: bytes) -> ResponsesRequest:
    """Parse and check the fields the gateway relies on; InvalidRequest says what is wrong."""
    body = json_object(raw, "Responses")
    model = body.get("model")
    if model is None:
        raise _invalid("Missing required parameter: 'model'", "model",
                       "missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("'model' must be a non-empty string", "model")
    items = body.get("input")
    if items is not None and not isinstance(items, str | list):
        raise _invalid("'input' must be a string or an array of input items", "input")
    if isinstance(items, list):
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise _invalid(f"'input[{index}]' must be an object", f"input[{index}]")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str | list):
        raise _invalid("'instructions' must be a string", "instructions")
    for name in ("stream", "background", "store"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise _invalid(f"'{name}' must be a boolean", name)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _invalid("'tools' must be an array", "tools")
    # The budget reserves what this allows: a translated target would take -1 or "abc" as
    # its upstream reads it (OpenAI's own floor of 16 is left to OpenAI).
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise _invalid("Invalid type for 'max_output_tokens': expected an integer.",
                       "max_output_tokens")
    if limit is not None and limit < 1:
        raise _invalid("Invalid 'max_output_tokens': integer below minimum value. Expected a "
                       f"value >= 1, but got {limit} instead.", "max_output_tokens",
                       "integer_below_min_value")
    if items is None and not (body.get("previous_response_id") or body.get("conversation")
                              or body.get("prompt")):
        raise _invalid("Missing required parameter: 'input'", "input",
                       "missing_required_parameter")
    return ResponsesRequest(body=body, raw=raw, model=model, stream=bool(body.get("stream")),
                            stateful=_stateful(body))


def _stateful(body: dict[str, Any]) -> str | None:
    """What in the request needs state kept by OpenAI, in words for an error message."""
    if body.get("previous_response_id"):
        return "'previous_response_id' continues a response stored by OpenAI"
    if body.get("conversation"):
        return "'conversation' names a conversation stored by OpenAI"
    if body.get("background") is True:
        return "'background' runs the response on OpenAI's side, to be polled later"
    if body.get("prompt"):
        return "'prompt' names a prompt template stored by OpenAI"
    items = body.get("input")
    if isinstance(items, list) and any(item.get("type") == "item_reference" for item in items):
        return "an 'item_reference' input item refers to an item stored by OpenAI"
    return None


def _invalid(message: str, param: str, code: str = "invalid_type") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)
