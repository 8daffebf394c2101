"""OpenAI chat completions ⇄ Anthropic Messages: pure translation, no I/O.

    to_anthropic(body, model, ...)      an OpenAI request body  → an Anthropic /v1/messages body
    completion_from_anthropic(message)  an Anthropic message    → an OpenAI `chat.completion`
    usage_from_anthropic / openai_usage Anthropic usage → `Usage` → OpenAI's usage object

(`anthropic_stream.StreamTranslator` does the same for a stream, one event at a time.)

A request this provider cannot express upstream raises `UpstreamRejected` (400), before any
network call. OpenAI fields with no Anthropic counterpart that change nothing essential
(penalties, seed, logprobs, `response_format` text/json_object, ...) are dropped.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from circuit.errors import UpstreamRejected
from circuit.wire import Usage

#: Anthropic `stop_reason` → OpenAI `finish_reason`.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _reject(message: str) -> UpstreamRejected:
    return UpstreamRejected(400, message, type="invalid_request_error", code="invalid_request")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------- request


def to_anthropic(body: dict[str, Any], model: str, *, default_max_tokens: int,
                 stream: bool) -> dict[str, Any]:
    """The Anthropic request for an OpenAI chat-completions body, aimed at `model`."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _reject("'messages' must be an array")
    if body.get("n") not in (None, 1):
        raise _reject("'n' other than 1 is not supported by Anthropic models")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        raise _reject("'response_format' of type json_schema is not supported by Anthropic "
                      "models; describe the schema in the prompt or use a tool")

    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _reject(f"'{where}' must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_system_blocks(message.get("content"), where))
        elif role == "user":
            _append(turns, "user", _user_content(message.get("content"), where))
        elif role == "assistant":
            content = _assistant_content(message, where)
            if content:  # an empty assistant turn says nothing; Anthropic would refuse it
                _append(turns, "assistant", content)
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, where)])
        else:
            raise _reject(f"'{where}.role' {role!r} is not supported by Anthropic models")

    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    out: dict[str, Any] = {"model": model,
                           "max_tokens": default_max_tokens if max_tokens is None else max_tokens,
                           "messages": turns}
    if system:
        if any("cache_control" in block for block in system):
            out["system"] = system  # blocks keep their cache breakpoints
        else:
            out["system"] = "\n\n".join(block["text"] for block in system)
    temperature = body.get("temperature")
    if temperature is not None:
        # OpenAI allows 0..2, Anthropic 0..1.
        out["temperature"] = min(max(temperature, 0), 1) if _is_number(temperature) \
            else temperature
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    if stream:
        out["stream"] = True
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    _add_tools(body, out)
    return out


def _append(turns: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Add a turn, merging it into the previous one of the same role (Anthropic alternates)."""
    if turns and turns[-1]["role"] == role:
        previous = turns[-1]
        previous["content"] = _as_blocks(previous["content"]) + _as_blocks(content)
    else:
        turns.append({"role": role, "content": content})


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _text_block(text: str, part: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if part is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _system_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [_text_block(content)] if content else []
    if not isinstance(content, list):
        raise _reject(f"'{where}.content' must be a string or an array of text parts")
    blocks = []
    for part in content:
        if not (isinstance(part, dict) and part.get("type") == "text"
                and isinstance(part.get("text"), str)):
            raise _reject(f"'{where}.content' may hold only text parts")
        if part["text"]:
            blocks.append(_text_block(part["text"], part))
    return blocks


def _user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _reject(f"'{where}.content' must be a string or an array of content parts")
    return [block for part in content if (block := _part(part, where)) is not None]


def _part(part: Any, where: str) -> dict[str, Any] | None:
    """One OpenAI content part as an Anthropic block (None for an empty text part)."""
    if isinstance(part, str):
        return _text_block(part) if part else None
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return _text_block(part["text"], part) if part["text"] else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str):
            block = {"type": "image", "source": _image_source(url, where)}
            if isinstance(part.get("cache_control"), dict):
                block["cache_control"] = part["cache_control"]
            return block
    raise _reject(f"'{where}.content' has a part of type {kind!r} that Anthropic models "
                  "cannot take")


def _image_source(url: str, where: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or not media_type:
        raise _reject(f"'{where}' has an image data URL that is not base64-encoded")
    return {"type": "base64", "media_type": media_type, "data": data}


def _assistant_content(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            blocks.append(_text_block(content))
    elif isinstance(content, list):
        for part in content:
            # An assistant's earlier refusal is what it said: keep it as text.
            if isinstance(part, dict) and part.get("type") == "refusal":
                part = {"type": "text", "text": part.get("refusal") or ""}
            block = _part(part, where)
            if block is not None:
                blocks.append(block)
    elif content is not None:
        raise _reject(f"'{where}.content' must be a string, an array or null")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _reject(f"'{where}.tool_calls' must be an array")
    for number, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not (isinstance(function, dict) and isinstance(call.get("id"), str)
                and isinstance(function.get("name"), str)):
            raise _reject(f"'{where}.tool_calls[{number}]' needs an id and a function name")
        blocks.append({"type": "tool_use", "id": call["id"], "name": function["name"],
                       "input": _arguments(function.get("arguments"),
                                           f"{where}.tool_calls[{number}]")})
    return blocks


def _arguments(arguments: Any, where: str) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        raise _reject(f"'{where}.function.arguments' is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _reject(f"'{where}.function.arguments' must be a JSON object")
    return parsed


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise _reject(f"'{where}.tool_call_id' is required for a tool message")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = _user_content(message.get("content") or "", where)
    if content:
        block["content"] = content
    return block


def _add_tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not tools:
        return
    if not isinstance(tools, list):
        raise _reject("'tools' must be an array")
    translated = []
    for number, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not (isinstance(tool, dict) and tool.get("type") == "function"
                and isinstance(function, dict) and isinstance(function.get("name"), str)):
            raise _reject(f"'tools[{number}]' must be a function tool with a name")
        entry: dict[str, Any] = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            entry["description"] = function["description"]
        parameters = function.get("parameters")
        entry["input_schema"] = parameters if isinstance(parameters, dict) \
            else {"type": "object", "properties": {}}
        translated.append(entry)
    out["tools"] = translated

    choice = body.get("tool_choice")
    anthropic_choice: dict[str, Any] | None
    if choice is None or choice == "auto":
        anthropic_choice = None if body.get("parallel_tool_calls") is not False \
            else {"type": "auto"}
    elif choice == "required":
        anthropic_choice = {"type": "any"}
    elif choice == "none":
        anthropic_choice = {"type": "none"}
    elif (isinstance(choice, dict) and choice.get("type") == "function"
          and isinstance(choice.get("function"), dict)
          and isinstance(choice["function"].get("name"), str)):
        anthropic_choice = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _reject("'tool_choice' must be \"auto\", \"required\", \"none\" or "
                      "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    if anthropic_choice is not None:
        if body.get("parallel_tool_calls") is False and anthropic_choice["type"] != "none":
            anthropic_choice["disable_parallel_tool_use"] = True
        out["tool_choice"] = anthropic_choice


# ---------------------------------------------------------------------- usage


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_anthropic(usage: Any) -> Usage | None:
    """Usage from an Anthropic `usage` object; the prompt total includes cache reads/writes."""
    if not isinstance(usage, dict):
        return None
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    return Usage(input_tokens=_count(usage.get("input_tokens")) + cache_read + cache_write,
                 output_tokens=_count(usage.get("output_tokens")),
                 cached_input_tokens=cache_read, cache_write_tokens=cache_write)


def openai_usage(usage: Usage) -> dict[str, Any]:
    """Usage in OpenAI's shape; `cache_write_tokens` is the field OpenRouter uses for it."""
    return {"prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens,
                                      "cache_write_tokens": usage.cache_write_tokens}}


# ---------------------------------------------------------------------- response


def completion_from_anthropic(message: dict[str, Any], model: str
                              ) -> tuple[dict[str, Any], Usage | None, str | None, str]:
    """(OpenAI `chat.completion` body, usage, finish_reason, text) for an Anthropic message.

    Raises KeyError/TypeError/AttributeError on a message that is not Anthropic's shape."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if block["type"] == "text":
            texts.append(block["text"])
        elif block["type"] == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])  # billed as output, not shown
        elif block["type"] == "tool_use":
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"],
                                       "arguments": orjson.dumps(block.get("input") or {})
                                       .decode()}})
        # thinking / redacted_thinking / server tool blocks have no OpenAI counterpart.
    stop_reason = message.get("stop_reason")
    finish = FINISH_REASONS.get(stop_reason, "stop") if stop_reason else None
    usage = usage_from_anthropic(message.get("usage"))
    text = "".join(texts)
    reply: dict[str, Any] = {"role": "assistant",
                             "content": text if texts or not calls else None,
                             "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    served_model = message.get("model")
    body: dict[str, Any] = {
        "id": "chatcmpl-" + str(message["id"]), "object": "chat.completion",
        "created": int(time.time()),
        "model": served_model if isinstance(served_model, str) and served_model else model,
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = openai_usage(usage)
    # What the output tokens paid for, for local counting: text, thinking, tool calls.
    counted = text + "".join(thinking) + "".join(
        c["function"]["name"] + c["function"]["arguments"] for c in calls)
    return body, usage, finish, counted
