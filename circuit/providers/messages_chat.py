"""Anthropic Messages ⇄ OpenAI chat completions, for a Messages client served by a chat target
(the reverse of anthropic_translate, which serves chat clients from Anthropic).

    Messages request                 chat completions request
    system (string or text blocks)   a first `system` message
    user text / image blocks         content parts (text, image_url: data URL or URL)
    user tool_result blocks          `tool` messages (before the user's other content;
                                     text only: chat's tool messages carry no images)
    assistant text / tool_use        content + tool_calls (thinking blocks dropped: chat
                                     has no way to send reasoning back)
    tools, tool_choice               function tools, auto/required/none/{function}
    thinking enabled, budget_tokens  reasoning_effort (EFFORTS); disabled, adaptive: none
    max_tokens, stop_sequences,      max_tokens (the provider sends it as its
    temperature, top_p, metadata     `max_tokens_field`: OpenAI's max_completion_tokens),
                                     stop, temperature, top_p, user; a stream asks for its
                                     usage (stream_options)

    chat.completion                  Anthropic message (a thinking block from
                                     reasoning_content, text, tool_use blocks, stop_reason,
                                     usage with cache reads split out)

A thinking block made from chat reasoning has `"signature": ""`: a signature is Anthropic's
proof over its own model's thinking, which Circuit has none of and does not invent (so a
stream sends no `signature_delta`).

What has no chat counterpart and changes the answer (documents, server tools) is refused with
a 400 rather than silently dropped, before any call: the door serves such a request from the
route's Anthropic targets only (routing.able_targets). The stream's translation is messages_chat_stream.py.
"""

from __future__ import annotations

from typing import Any

import orjson

from circuit.errors import InvalidRequest, UpstreamFailed
from circuit.providers.openai_wire import reasoning_of
from circuit.wire import Completion, Usage

#: OpenAI `finish_reason` → Anthropic `stop_reason`.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}


#: Anthropic `thinking.budget_tokens` → chat `reasoning_effort`: the least budget of each
#: effort, "low" below them. LiteLLM's thresholds (its Messages adapter), except that budgets
#: under 2,000 ask for "low" too, not "minimal", which only gpt-5 takes (o-series models and
#: DeepSeek refuse it); Anthropic's own least budget is 1,024.
EFFORTS = ((10_000, "high"), (5_000, "medium"))
THINKING_TYPES = ("disabled", "enabled", "adaptive")
LEAST_THINKING_BUDGET = 1_024


def _reject(message: str) -> InvalidRequest:
    return InvalidRequest(message)


def _string(block: dict[str, Any], name: str, where: str) -> str:
    """`block[name]`, which Anthropic requires to be a string: anything else is its 400,
    never the text "None" sent on (str() of what a client left out)."""
    value = block.get(name)
    if not isinstance(value, str):
        raise _reject(f"{where}.{name}: Input should be a valid string")
    return value


def _text_of(content: Any, where: str) -> str:
    """The text of a string, or of an array's text blocks (absent: "")."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _reject(f"{where}: Input should be a valid string or list")
    return "".join(_string(b, "text", f"{where}.{i}") for i, b in enumerate(content)
                   if isinstance(b, dict) and b.get("type") == "text")


def _tool_result_text(content: Any, where: str) -> str:
    """A tool_result's content as a chat `tool` message's text: OpenAI's tool message takes
    text parts only (ChatCompletionRequestToolMessageContentPart), so any other block (an
    image, a document) would be dropped, and is refused instead."""
    if isinstance(content, list):
        for index, block in enumerate(content):
            if not isinstance(block, dict):
                raise _reject(f"{where}.content.{index}: Input should be an object")
            if block.get("type") != "text":
                raise _reject(f"{where}.content.{index}: a {block.get('type')!r} block in a "
                              "tool_result cannot be sent to a chat-completions model (its "
                              "tool messages carry text only); route this model to an "
                              "Anthropic provider")
    return _text_of(content, f"{where}.content")


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _reject(f"{where}.source: must be an object")
    if source.get("type") == "base64":
        media, data = (_string(source, name, f"{where}.source") for name in ("media_type",
                                                                              "data"))
        url = f"data:{media};base64,{data}"
    elif source.get("type") == "url":
        url = _string(source, "url", f"{where}.source")
    else:
        raise _reject(f"{where}.source.type: only base64 and url images can be translated")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_turn(content: Any, where: str) -> list[dict[str, Any]]:
    """The chat messages of one user turn: tool results first, then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        at = f"{where}.content.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _string(block, "text", at)})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            text = _tool_result_text(block.get("content"), at)
            if block.get("is_error"):
                text = "Error: " + text
            tools.append({"role": "tool", "tool_call_id": _string(block, "tool_use_id", at),
                          "content": text})
        else:
            raise _reject(f"{at}: a {kind!r} block cannot be sent to a chat-completions "
                          "model; route this model to an Anthropic provider")
    if parts:
        tools.append({"role": "user", "content": parts})
    return tools


def _assistant_turn(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        at = f"{where}.content.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_string(block, "text", at))
        elif kind == "tool_use":
            calls.append({"id": _string(block, "id", at), "type": "function", "function": {
                "name": _string(block, "name", at),
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        # thinking and redacted_thinking blocks have no chat counterpart: dropped.
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def reasoning_effort(thinking: Any, max_tokens: Any = None) -> str | None:
    """The chat `reasoning_effort` for a Messages request's `thinking` (None: send none, as
    for `disabled`, absent, or `adaptive`, which leaves the effort to the model); a budget
    not below `max_tokens` is refused, as Anthropic refuses it."""
    # Refused as Anthropic refuses them, rather than quietly sent without thinking.
    if thinking is None:
        return None
    if not isinstance(thinking, dict):
        raise _reject("thinking: Input should be an object")
    kind = thinking.get("type")
    if kind not in THINKING_TYPES:
        raise _reject(f"thinking: Input tag {kind!r} found using 'type' does not match any of "
                      f"the expected tags: {', '.join(map(repr, THINKING_TYPES))}")
    if kind != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise _reject("thinking.budget_tokens: must be an integer")
    if budget < LEAST_THINKING_BUDGET:
        raise _reject("thinking.enabled.budget_tokens: Input should be greater than or equal "
                      f"to {LEAST_THINKING_BUDGET}")
    if type(max_tokens) is int and budget >= max_tokens:
        raise _reject("`max_tokens` must be greater than `thinking.budget_tokens`")
    return next((effort for least, effort in EFFORTS if budget >= least), "low")


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools:
        functions = []
        for index, tool in enumerate(tools):
            if not isinstance(tool, dict) or "input_schema" not in tool:
                raise _reject(f"tools.{index}: only custom tools (with input_schema) can be "
                              "sent to a chat-completions model")
            function = {"name": tool.get("name"), "parameters": tool["input_schema"]}
            if tool.get("description"):
                function["description"] = tool["description"]
            functions.append({"type": "function", "function": function})
        out["tools"] = functions
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in ("auto", "any", "none"):
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
        if choice.get("disable_parallel_tool_use") is True and tools:
            out["parallel_tool_calls"] = False


def to_chat(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The chat-completions body for a Messages request (InvalidRequest for what cannot be
    translated: the door then leaves chat targets out of the route, routing.able_targets)."""
    try:
        return _to_chat(body, model)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # Shapes the door does not check (it leaves them to the upstream) but a translation
        # must read: a 400 that says so, never a 500.
        raise _reject(f"The request cannot be translated for a chat-completions model: "
                      f"{exc.__class__.__name__}: {exc}") from None


def _to_chat(body: dict[str, Any], model: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = _text_of(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(body["messages"]):
        content = message.get("content")
        if message.get("role") == "assistant":
            messages.append(_assistant_turn(content, f"messages.{index}"))
        else:
            messages.extend(_user_turn(content, f"messages.{index}"))
    out: dict[str, Any] = {"model": model, "messages": messages,
                           "max_tokens": body.get("max_tokens")}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    user = (body.get("metadata") or {}).get("user_id") \
        if isinstance(body.get("metadata"), dict) else None
    if isinstance(user, str):
        out["user"] = user
    effort = reasoning_effort(body.get("thinking"), body.get("max_tokens"))
    if effort is not None:
        out["reasoning_effort"] = effort
    _tools(body, out)
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


# ---------------------------------------------------------------------- answers


def anthropic_usage(usage: Usage | None) -> dict[str, int]:
    """Usage in Anthropic's shape: `input_tokens` without the cache reads and writes."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": max(0, usage.input_tokens - usage.cached_input_tokens
                                - usage.cache_write_tokens),
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens}


def thinking_block(thought: str = "") -> dict[str, Any]:
    """A thinking block for chat reasoning text: no signature (see the module's docstring)."""
    return {"type": "thinking", "thinking": thought, "signature": ""}


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is ({} when unreadable)."""
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def message_from_chat(answer: Completion, model: str) -> Completion:
    """A chat completion's answer as an Anthropic message (usage and text kept)."""
    try:
        completion = orjson.loads(answer.body)
        choice = completion["choices"][0]
        reply = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        thought = reasoning_of(reply)
        if thought:
            content.append(thinking_block(thought))
        if reply.get("content"):
            content.append({"type": "text", "text": reply["content"]})
        for call in reply.get("tool_calls") or ():
            function = call["function"]
            content.append({"type": "tool_use", "id": call["id"], "name": function["name"],
                            "input": tool_input(function.get("arguments"))})
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        raise UpstreamFailed("the upstream sent an unreadable chat completion",
                             code="bad_upstream_response") from None
    stop = STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn")
    message = {"id": "msg_" + str(completion.get("id", "")), "type": "message",
               "role": "assistant", "model": model, "content": content,
               "stop_reason": stop, "stop_sequence": None,
               "usage": anthropic_usage(answer.usage)}
    return Completion(body=orjson.dumps(message), usage=answer.usage, finish_reason=stop,
                      text=answer.text)
