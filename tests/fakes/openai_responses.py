"""The fake OpenAI upstream's Responses API (`POST /v1/responses`): the wire format, as pure
helpers the fake's handler (openai_upstream.py) serves.

Deterministic, one word = one token, as the fake's chat endpoint:

* reply: ``Behaviour.reply`` or ``"Echo: <first 40 chars of the last user input>. This is a
  deterministic reply from the fake upstream."``; ``max_output_tokens`` truncates it to that
  many words, and the response is then ``incomplete`` (reason ``max_output_tokens``);
* ``input_tokens`` = words of ``instructions`` and every input text + 3 per input item + 3,
  plus tools at four bytes of their JSON a token; ``output_tokens`` = words emitted;
* ``Behaviour.tool_call`` (``{"name": ..., "arguments": "..."}``) answers one function call
  instead of text.

A stream is OpenAI's sequence, each event with its ``event:`` line and a ``sequence_number``
from 0: ``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, one ``response.output_text.delta`` per word,
``response.output_text.done``, ``response.content_part.done``, ``response.output_item.done``,
``response.completed`` (or ``response.incomplete``) carrying the whole response and usage.
No ``[DONE]``: the Responses API ends after its terminal event.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

REPLY_SUFFIX = "This is a deterministic reply from the fake upstream."


def _texts(value: Any) -> list[str]:
    """Every text of an input item (or of instructions)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, dict):
        found = []
        for name in ("content", "text", "output", "arguments"):
            if name in value:
                found += _texts(value[name])
        return found
    return []


def input_tokens(body: dict[str, Any]) -> int:
    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
    words = sum(len(text.split()) for text in _texts(items) + _texts(body.get("instructions")))
    tools = len(orjson.dumps(body["tools"])) // 4 if body.get("tools") else 0
    return words + 3 * len(items) + 3 + tools


def reply_text(body: dict[str, Any], reply: str | None) -> str:
    if reply is not None:
        return reply
    items = body.get("input")
    last = items if isinstance(items, str) else ""
    if isinstance(items, list):
        for item in reversed(items):
            if isinstance(item, dict) and item.get("role") == "user":
                last = " ".join(_texts(item.get("content")))
                break
    return f"Echo: {last[:40]}. {REPLY_SUFFIX}"


def reply_words(body: dict[str, Any], reply: str | None,
                ignore_limit: bool = False) -> tuple[list[str], bool]:
    """(words, whether max_output_tokens cut them)."""
    words = reply_text(body, reply).split()
    limit = body.get("max_output_tokens")
    if not ignore_limit and isinstance(limit, int) and not isinstance(limit, bool) \
            and 0 <= limit < len(words):
        return words[:limit], True
    return words, False


def usage(body: dict[str, Any], output_tokens: int) -> dict[str, Any]:
    tokens = input_tokens(body)
    return {"input_tokens": tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens + output_tokens}


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text,
                                        "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": content}


def call_item(item_id: str, call: dict[str, Any], arguments: str | None = None,
              status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status,
            "call_id": "call_" + item_id, "name": call["name"],
            "arguments": call["arguments"] if arguments is None else arguments}


def response_object(body: dict[str, Any], response_id: str, *, status: str,
                    output: list[dict[str, Any]], usage_: dict[str, Any] | None,
                    created: int | None = None) -> dict[str, Any]:
    """A Response object as OpenAI returns it (the fields of the spec's `Response`)."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    response = {
        "id": response_id, "object": "response", "created_at": created or int(time.time()),
        "status": status, "background": False, "error": None,
        "incomplete_details": incomplete, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": body["model"],
        "output": output, "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"), "tools": [
            {"description": None, "strict": True, **tool} for tool in body.get("tools") or ()],
        "top_p": 1.0, "truncation": "disabled", "metadata": body.get("metadata") or {},
    }
    if usage_ is not None:  # absent until the response is complete
        response["usage"] = usage_
    return response


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class EventNumbers:
    """Numbers events from 0, as OpenAI does."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "sequence_number": self.next, **fields}
        self.next += 1
        return event
