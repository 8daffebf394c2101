"""Reading an Anthropic Messages request: the fields the gateway relies on, checked cheaply.

As on the chat door (chat_request.py), the body is parsed once with orjson and forwarded as the
client sent it; only what the gateway itself reads is checked — `model`, `messages`,
`max_tokens` (the budget's output bound, which Anthropic requires), `stream`, `system`, `tools`
— with Anthropic's wording, so a client gets the 400 it would get from Anthropic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from circuit.errors import AuthenticationFailed, InvalidRequest
from circuit.gateway.auth import ClientKey, KeyRing


@dataclass(slots=True)
class MessagesRequest:
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    #: The system prompt and messages in chat form, for a local count (circuit.accounting).
    counted: list[Any]


def authenticate(keys: KeyRing, headers: Any) -> ClientKey:
    """The caller of `x-api-key: <key>` (the Anthropic SDK) or `Authorization: Bearer <key>`
    (Claude Code with ANTHROPIC_AUTH_TOKEN): the same keys as every door."""
    api_key = headers.get("x-api-key")
    if api_key:
        return keys.authenticate("Bearer " + api_key)
    authorization = headers.get("authorization")
    if not authorization:
        raise AuthenticationFailed("Missing API key: send it as 'x-api-key: <key>' or "
                                   "'Authorization: Bearer <key>'")
    return keys.authenticate(authorization)


def _invalid(message: str, code: str = "invalid_type") -> InvalidRequest:
    return InvalidRequest(message, code=code)


def parse_messages_request(raw: bytes, *, require_max_tokens: bool = True) -> MessagesRequest:
    """Parse and check the fields the gateway relies on; InvalidRequest says what is wrong.
    `count_tokens` takes the same body without `max_tokens`."""
    if not raw.strip():
        raise _invalid("The request body is empty; send a JSON Messages request", "invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"The request body is not valid JSON: {exc.msg}", "invalid_json") \
            from None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object", "invalid_json")
    model = body.get("model")
    if model is None:
        raise _invalid("model: Field required", "missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("model: must be a non-empty string")
    messages = body.get("messages")
    if messages is None:
        raise _invalid("messages: Field required", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _invalid(f"messages.{index}: must be an object whose role is "
                           "'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, str | list):
            raise _invalid(f"messages.{index}.content: must be a string or a list of "
                           "content blocks")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        if require_max_tokens:
            raise _invalid("max_tokens: Field required", "missing_required_parameter")
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _invalid("max_tokens: must be an integer of at least 1")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream: Input should be a valid boolean")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _invalid("system: must be a string or a list of text blocks")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _invalid("tools: Input should be a valid list")
    counted = ([{"role": "system", "content": system}] if system else []) + messages
    return MessagesRequest(body=body, raw=raw, model=model, stream=bool(stream),
                           counted=counted)
