"""What the mock answers a request with: its choices, their finish reasons and its usage.

A plain request (no tools, no `response_format`, `n`, `stop` or `logprobs`) takes the short
path: one text reply, cut to the token limit, counted. The others get what a real model would
give them: tool calls (`mock_tools`), JSON that meets the requested schema (`mock_schema`), `n`
identical choices, text cut before the first stop sequence, logprobs (`mock_logprobs`).

The token limit is `max_completion_tokens` or `max_tokens`, the smaller if both are sent (what
a model would stop at; the gateway's admission reads them the same way); it applies to each
choice, to the content or to the tool-call arguments, and cuts at an exact token, finish
reason "length". Completion tokens count every choice: content, or tool names and arguments.
Prompt tokens count the messages and, as OpenAI bills them, the tool definitions and the
response schema (as their JSON text: an approximation of OpenAI's own rendering).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import tiktoken

from circuit.accounting.tokens import TokenCounter
from circuit.providers.mock_logprobs import MAX_TOP_LOGPROBS, token_logprobs
from circuit.providers.mock_schema import example_value
from circuit.providers.mock_tools import ToolPlan, message_text, plan_tool_calls
from circuit.wire import Usage

#: Request fields that leave the plain path.
_SHAPING = frozenset(("tools", "functions", "response_format", "n", "stop", "logprobs"))
#: OpenAI's limit on `n`.
MAX_CHOICES = 128
_EXCERPT_WORDS = 12
#: At most this many `{` are tried when looking for a schema in a json_object prompt.
_SCHEMA_PROBES = 64
_call_ids = itertools.count(1)


@dataclass(slots=True)
class MockCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class MockChoice:
    content: str | None
    finish_reason: str
    calls: Sequence[MockCall] = ()
    legacy_call: bool = False  # answer as `function_call` (the request used `functions`)
    structured: bool = False  # the content is JSON (streamed in JSON-sized fragments)
    logprobs: list[dict] | None = None  # token entries, when the request asked for logprobs


@dataclass(slots=True)
class MockReply:
    choices: list[MockChoice]
    usage: Usage
    logprobs: bool = False  # the request asked for logprobs

    @property
    def text(self) -> str:
        """Everything generated, as the gateway counts a stream's output."""
        if len(self.choices) == 1 and not self.choices[0].calls:
            return self.choices[0].content or ""
        return "".join((c.content or "") + "".join(k.name + k.arguments for k in c.calls)
                       for c in self.choices)


def compose(body: dict[str, Any], model: str, counter: TokenCounter) -> MockReply:
    """The mock's answer to a chat-completion request body."""
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    limit = token_limit(body)
    encoding = counter.encoding(model)
    prompt = counter.count_messages(model, messages)
    if _SHAPING.isdisjoint(body):
        content, tokens, finish = _cut(encoding, reply_text(messages), limit)
        return MockReply([MockChoice(content, finish)], Usage(prompt, len(tokens)))
    prompt += _definition_tokens(body, encoding)
    count = _choice_count(body.get("n"))
    top = _top_logprobs(body)
    offered = body.get("tools") or body.get("functions")
    plan = plan_tool_calls(body, messages) if offered else None
    if plan is not None:
        choices = [_tool_choice(plan, encoding, limit) for _ in range(count)]
        used = sum(len(encoding.encode_ordinary(call.name))
                   + len(encoding.encode_ordinary(call.arguments))
                   for choice in choices for call in choice.calls)
        return MockReply(choices, Usage(prompt, used), logprobs=top is not None)
    text, structured = _content(body.get("response_format"), messages)
    content, tokens, finish = _cut(encoding, _before_stop(text, body.get("stop")), limit)
    entries = token_logprobs(encoding, tokens, top) if top is not None else None
    choices = [MockChoice(content, finish, structured=structured, logprobs=entries)
               for _ in range(count)]
    return MockReply(choices, Usage(prompt, len(tokens) * count), logprobs=top is not None)


#: Characters of one echoed word, and of the message looked at for the words to echo.
_EXCERPT_WORD_CHARS, _EXCERPT_SCAN_CHARS = 40, 4096


def reply_text(messages: list) -> str:
    """The reply to the conversation's last turn: to the user's words, or to a tool's result."""
    said, lead = "", "You said"
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user" or role == "tool" or role == "function":
            content = message.get("content")
            text = content if isinstance(content, str) else message_text(content)
            # A word is cut too: one 5 MB "word" echoed whole made every answer 5 MB long.
            said = " ".join(word[:_EXCERPT_WORD_CHARS]
                            for word in text[:_EXCERPT_SCAN_CHARS].split()[:_EXCERPT_WORDS])
            lead = "You said" if role == "user" else "The tool returned"
            break
    return (f"This is a mock reply from Circuit. {lead}: {said or '(nothing)'}. The mock provider "
            "answers every request deterministically, so you can try the gateway without an "
            "upstream key.")


def token_limit(body: dict[str, Any]) -> int | None:
    """The output limit per choice: the smaller of `max_completion_tokens` and `max_tokens`."""
    limit = None
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            limit = value if limit is None else min(limit, value)
    return limit


def _cut(encoding: tiktoken.Encoding, text: str, limit: int | None
         ) -> tuple[str, list[int], str]:
    """The text up to `limit` tokens, its tokens and the finish reason."""
    tokens = encoding.encode_ordinary(text)
    if limit is None or len(tokens) <= limit:
        return text, tokens, "stop"
    tokens = tokens[:limit]
    return encoding.decode(tokens), tokens, "length"


def _tool_choice(plan: ToolPlan, encoding: tiktoken.Encoding, limit: int | None) -> MockChoice:
    """The planned calls, each with a fresh id, their arguments cut once `limit` is spent."""
    calls, spent = [], 0
    finish = "function_call" if plan.legacy else "tool_calls"
    for call in plan.calls:
        arguments = call.arguments
        if limit is not None:
            tokens = encoding.encode_ordinary(arguments)
            if spent + len(tokens) > limit:
                arguments = encoding.decode(tokens[:limit - spent])
                finish = "length"
            spent += len(tokens)
        calls.append(MockCall(f"call_mock{next(_call_ids)}", call.name, arguments))
        if finish == "length":
            break
    return MockChoice(None, finish, calls=calls, legacy_call=plan.legacy)


def _content(response_format: Any, messages: list) -> tuple[str, bool]:
    """The reply's content and whether it is JSON, as `response_format` asks."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return orjson.dumps(example_value(schema)).decode(), True
        kind = "json_object"
    if kind == "json_object":
        # The schema is in the prompt, if anywhere (instructor's JSON mode puts it there).
        schema = _schema_in(messages)
        value = example_value(schema) if schema is not None else None
        if not isinstance(value, dict):
            value = {"reply": reply_text(messages)}
        return orjson.dumps(value).decode(), True
    return reply_text(messages), False


def _schema_in(messages: list) -> dict | None:
    """The last JSON Schema of an object written into the prompt's text, if any."""
    decoder = json.JSONDecoder()
    probes = 0
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer",
                                                                        "user"):
            continue
        text = message_text(message.get("content"))
        start = text.find("{")
        while start >= 0 and probes < _SCHEMA_PROBES:
            probes += 1
            try:
                value, end = decoder.raw_decode(text, start)
            except ValueError:
                start = text.find("{", start + 1)
                continue
            if isinstance(value, dict) and isinstance(value.get("properties"), dict):
                return value
            start = text.find("{", end)
    return None


def _before_stop(text: str, stop: Any) -> str:
    """The text before the first of the stop sequences (a string or a list of them)."""
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    found = [i for s in stops if isinstance(s, str) and s and (i := text.find(s)) >= 0]
    return text[:min(found)] if found else text


def _choice_count(n: Any) -> int:
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return min(n, MAX_CHOICES)
    return 1


def _top_logprobs(body: dict[str, Any]) -> int | None:
    """Alternatives per token when logprobs are asked for, else None."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    if isinstance(top, int) and not isinstance(top, bool):
        return max(0, min(top, MAX_TOP_LOGPROBS))
    return 0


def _definition_tokens(body: dict[str, Any], encoding: tiktoken.Encoding) -> int:
    """Tokens of the tool definitions and response schema, which OpenAI bills as prompt."""
    parts = [body.get("tools"), body.get("functions")]
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        parts.append(response_format.get("json_schema"))
    return sum(len(encoding.encode_ordinary(orjson.dumps(p).decode())) for p in parts if p)
