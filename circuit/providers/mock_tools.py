"""Which tools the mock calls, and with what arguments.

The rules, deterministic and close to what a model does:
- Tools come from `tools` (function tools) or the legacy `functions`; `tool_choice` (or the
  legacy `function_call`) narrows them: "none" calls nothing, a named function is always called,
  `allowed_tools` restricts the set, "auto" (the default) and "required" call one.
- Which one: the tool whose name shares the most words with the last user message
  (`get_weather` for "weather in Paris?"); on a tie, the first declared. With
  `parallel_tool_calls` not false, every tool whose name the message mentions is called.
- Once the conversation holds a tool result after the last user message, "auto" answers in text
  (so agent loops end); "required" calls a tool not called since that message (an agent's
  output tool, say), or the best one again if all were.
- Arguments are generated from the tool's `parameters` schema (`mock_schema`), so they validate.
Custom tools (`type: "custom"`) are never called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from circuit.providers.mock_schema import example_value

_NAME_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_TEXT_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: Any  # a JSON Schema, or None for a tool that takes nothing


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class ToolPlan:
    calls: list[ToolCall]
    legacy: bool  # answered as `function_call` (the request used `functions`)


def plan_tool_calls(body: dict[str, Any], messages: list) -> ToolPlan | None:
    """The calls to answer with, or None to answer in text (or JSON)."""
    legacy = not body.get("tools") and bool(body.get("functions"))
    tools = _declared(body.get("functions") if legacy else body.get("tools"), legacy)
    if not tools:
        return None
    choice = body.get("function_call" if legacy else "tool_choice", "auto")
    if choice == "none" or (isinstance(choice, dict) and choice.get("type") == "custom"):
        return None
    named = _named(choice)
    if named is not None:
        forced = [t for t in tools if t.name == named]
        return _plan(forced[:1], legacy) if forced else None
    required = choice == "required"
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        allowed = allowed if isinstance(allowed, dict) else {}
        names = {_named(t) for t in allowed.get("tools") or ()}
        tools = [t for t in tools if t.name in names]
        required = allowed.get("mode") == "required"
    if not tools:
        return None
    called = _called_since_last_user(messages)
    if called is not None:
        if not required:
            return None
        tools = [t for t in tools if t.name not in called] or tools
    scores = _scores(tools, last_user_text(messages))
    best = max(scores)
    parallel = not legacy and body.get("parallel_tool_calls") is not False
    if parallel and best > 0:
        chosen = [t for t, s in zip(tools, scores, strict=True) if s > 0]
    else:
        chosen = [tools[scores.index(best)]]
    return _plan(chosen, legacy)


def _plan(tools: list[Tool], legacy: bool) -> ToolPlan:
    return ToolPlan([ToolCall(t.name, orjson.dumps(_arguments(t.parameters)).decode())
                     for t in tools], legacy)


def _arguments(parameters: Any) -> Any:
    if not isinstance(parameters, dict) or not parameters:
        return {}
    value = example_value(parameters)
    return value if isinstance(value, dict) else {}


def _declared(entries: Any, legacy: bool) -> list[Tool]:
    tools = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        function = entry if legacy else entry.get("function")
        if (legacy or entry.get("type", "function") == "function") and isinstance(function, dict):
            name = function.get("name")
            if isinstance(name, str) and name:
                tools.append(Tool(name, function.get("parameters")))
    return tools


def _named(choice: Any) -> str | None:
    """The function a tool choice names: {"type": "function", "function": {"name": ...}} or
    the legacy {"name": ...}."""
    if not isinstance(choice, dict):
        return None
    function = choice.get("function", choice)
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def _called_since_last_user(messages: list) -> set[str] | None:
    """Names of tools called after the last user message, if a tool result followed them."""
    called: set[str] = set()
    answered = False
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            break
        if role in ("tool", "function"):
            answered = True
        elif role == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("name"), str):
                    called.add(function["name"])
            legacy = message.get("function_call")
            if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
                called.add(legacy["name"])
    return called if answered else None


def _scores(tools: list[Tool], text: str) -> list[int]:
    words = set(_TEXT_WORD.findall(text.lower()))
    return [sum(1 for w in _NAME_WORD.findall(t.name) if len(w) > 2 and w.lower() in words)
            for t in tools]


def last_user_text(messages: list) -> str:
    """The text of the last user message ("" if none)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def message_text(content: Any) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content
                        if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
