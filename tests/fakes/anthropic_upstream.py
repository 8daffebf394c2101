"""A fake Anthropic upstream: a real HTTP server speaking the Messages API wire format.

    with FakeAnthropic() as upstream:
        upstream.script(Behaviour(status=529), Behaviour())
        provider = AnthropicProvider("anthropic", upstream.base_url, "sk-ant-provider")
        ...
        assert upstream.received[0].api_key == "sk-ant-provider"

``base_url`` is ``http://127.0.0.1:<port>`` (no ``/v1``, like ``https://api.anthropic.com``).
Endpoints: ``POST /v1/messages`` (JSON, or SSE with ``event:`` lines),
``POST /v1/messages/count_tokens`` and ``GET /v1/models`` (paginated with ``limit``/``after_id``). Requests are validated the way the real API does,
with a 400 ``invalid_request_error`` (or 401 ``authentication_error``) in Anthropic's error
shape, ``{"type": "error", "error": {"type", "message"}, "request_id"}``: ``x-api-key`` and
``anthropic-version`` headers required; ``model``, ``max_tokens`` and ``messages`` required and
no unknown top-level fields; messages start with ``user`` and alternate; non-empty content
(except a final assistant turn); ``tool_use`` only from the assistant and each answered by a
``tool_result`` in the next user turn; ``temperature``/``top_p`` within 0..1; well-formed
``tools`` and ``tool_choice``. A request refused by validation consumes no scripted behaviour.

Replies are deterministic; one word = one token:

* text: ``Behaviour.reply`` or ``"Echo: <first 40 chars of the last user text>. This is a
  deterministic reply from the fake upstream."`` (no text at all when the behaviour asks for
  tool calls and gives no reply);
* ``max_tokens`` truncates to that many words (``stop_reason="max_tokens"``, tool calls
  dropped); a ``stop_sequences`` entry found in the text cuts it there
  (``stop_reason="stop_sequence"``); ``Behaviour.tool_uses`` → ``tool_use`` blocks
  (``stop_reason="tool_use"``); otherwise ``"end_turn"``;
* ``count_input_tokens(body)`` = words of the system prompt and of every text, tool input and
  tool result + 3 per message + 3; the ``usage.input_tokens`` reported is that total minus
  ``Behaviour.cache_read_tokens`` and ``cache_creation_tokens``, which are reported as
  ``cache_read_input_tokens``/``cache_creation_input_tokens``;
* ``output_tokens`` = words of text + ``TOOL_USE_TOKENS`` per tool call.

A stream is the real sequence: ``message_start`` (usage with ``output_tokens: 1``), for the
text a ``content_block_start``, a ``ping``, one ``text_delta`` per word (a leading space on
all but the first) and ``content_block_stop``; per tool call ``content_block_start``
(``tool_use`` with ``input: {}``), an empty ``input_json_delta``, the input JSON in two
``input_json_delta`` halves and ``content_block_stop``; then ``message_delta`` (stop_reason,
``usage.output_tokens``) and ``message_stop``.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.oversized import write_padded
from tests.fakes.server_thread import ServerThread

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805",
                  "claude-haiku-4-5-20251001", "claude-3-5-haiku-20241022")
REPLY_SUFFIX = "This is a deterministic reply from the fake upstream."
TOOL_USE_TOKENS = 20

_TOP_LEVEL = {"model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k",
              "stop_sequences", "stream", "metadata", "tools", "tool_choice", "thinking",
              "service_tier"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
_WORD = re.compile(r"\s*\S+")

# Anthropic's error type and message per status, when the Behaviour doesn't say.
_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified "
                              "resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate "
                              "limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass
class ToolUse:
    """A tool call the fake model makes."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str | None = None  # default: toolu_fake<n>


@dataclass
class Behaviour:
    """How the fake answers one messages request. Defaults = a well-behaved Anthropic."""

    status: int = 200
    """Non-200: answer in Anthropic's error shape with this status."""
    error_type: str | None = None
    """``error.type`` (default by status: 529 → overloaded_error, 429 → rate_limit_error, ...)."""
    error_message: str | None = None
    retry_after: str | None = None
    """Sent as the ``retry-after`` header with an error response."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers."""
    hang: float = 0.0
    """Seconds to sleep before sending response headers."""
    first_event_delay: float = 0.0
    """Stream: seconds to sleep after the headers, before the first event."""
    event_delay: float = 0.0
    """Stream: seconds to sleep between consecutive events."""
    reply: str | None = None
    """The reply text (split into words, truncated by max_tokens and stop sequences)."""
    tool_uses: list[ToolUse] = field(default_factory=list)
    """Tool calls to make, after the text (if any)."""
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    pings: bool = True
    """Stream: send a ``ping`` event after the first content block starts."""
    drop_after_deltas: int | None = None
    """Stream: abort the TCP connection after N text deltas (no message_delta/stop)."""
    error_event_after_deltas: int | None = None
    """Stream: after N text deltas send an ``error`` event and end the response
    (-1: the error event is the very first event, before message_start)."""
    error_event_type: str = "overloaded_error"
    omit_message_stop: bool = False
    """Stream: end the response cleanly right after message_delta, without message_stop."""
    json_for_stream: bool = False
    """Answer a stream request with the whole JSON message (a misconfigured proxy upstream)."""
    ignore_max_tokens: bool = False
    """Say the whole reply whatever ``max_tokens`` allows (an upstream that overruns)."""
    omit_usage: bool = False
    """No usage: the JSON answer has none, and the stream's message_delta carries none."""
    oversized: int | None = None
    """JSON: the text is this many bytes of "x"; stream: after ``oversized_after_deltas`` text
    deltas, one delta of this many bytes. Written a MiB at a time: the fake never holds it."""
    oversized_after_deltas: int = 0


@dataclass
class ReceivedRequest:
    """One request as the fake saw it."""

    body: dict[str, Any] | None
    raw: bytes
    headers: dict[str, str]  # lower-cased names
    path: str = "/v1/messages"
    query: str = ""  # the query string, as sent (e.g. "beta=true")
    behaviour: Behaviour | None = None  # None: refused by validation (or not a messages call)
    rejection: str | None = None  # the validation message, when refused

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-api-key") or None

    @property
    def anthropic_version(self) -> str | None:
        return self.headers.get("anthropic-version")


class InvalidRequest(Exception):
    """A request the real API would refuse with 400 invalid_request_error."""


# ---------------------------------------------------------------------- pure helpers


def _texts(content: Any) -> list[str]:
    """Every text in a content value: strings, text blocks, tool inputs and tool results."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                out.append(block["text"])
            elif block.get("type") == "tool_use":
                out.append(orjson.dumps(block.get("input") or {}).decode())
            elif block.get("type") == "tool_result":
                out.extend(_texts(block.get("content")))
    return out


def count_input_tokens(body: dict[str, Any]) -> int:
    """Words of the system prompt and of all message texts + 3 per message + 3."""
    messages = body.get("messages") or []
    words = sum(len(t.split()) for t in _texts(body.get("system")))
    words += sum(len(t.split()) for m in messages for t in _texts(m.get("content")))
    return words + 3 * len(messages) + 3


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(b["text"] for b in content
                            if b.get("type") == "text" and isinstance(b.get("text"), str))
    return ""


def reply_for(messages: list[Any]) -> str:
    return f"Echo: {last_user_text(messages)[:40]}. {REPLY_SUFFIX}"


def error_body(status: int, type_: str | None = None, message: str | None = None,
               request_id: str = "req_fake") -> dict[str, Any]:
    d_type, d_message = _DEFAULT_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}"))
    return {"type": "error",
            "error": {"type": type_ or d_type, "message": message or d_message},
            "request_id": request_id}


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def validate(body: Any) -> None:
    """Raise InvalidRequest with the real API's wording for a body it would refuse."""
    if not isinstance(body, dict):
        raise InvalidRequest("There was an error parsing the body of your request.")
    for name in body:
        if name not in _TOP_LEVEL:
            raise InvalidRequest(f"{name}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be a valid integer greater than 0")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                  or not 0 <= value <= 1):
            raise InvalidRequest(f"{name}: range: 0..1")
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list)
                                 and all(isinstance(s, str) for s in stop)):
        raise InvalidRequest("stop_sequences: Input should be a valid list of strings")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: Input should be a valid boolean")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict)
                                 or set(metadata) - {"user_id"}):
        raise InvalidRequest("metadata: only user_id is permitted")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            raise InvalidRequest("system: Input should be a valid string or list")
        for i, block in enumerate(system):
            _validate_text(block, f"system.{i}")
    tool_names = _validate_tools(body)
    _validate_messages(body.get("messages"), tool_names)


def _validate_text(block: Any, where: str) -> None:
    if not (isinstance(block, dict) and block.get("type") == "text"
            and isinstance(block.get("text"), str)):
        raise InvalidRequest(f"{where}: Input should be a valid text block")
    if not block["text"]:
        raise InvalidRequest(f"{where}.text: text content blocks must be non-empty")


def _validate_tools(body: dict[str, Any]) -> set[str]:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) \
                    or not _TOOL_NAME.match(tool["name"]):
                raise InvalidRequest(f"tools.{i}.name: String should match pattern "
                                     "'^[a-zA-Z0-9_-]{1,128}$'")
            extra = set(tool) - {"name", "description", "input_schema", "cache_control", "type"}
            if extra:
                raise InvalidRequest(f"tools.{i}.{sorted(extra)[0]}: Extra inputs are not "
                                     "permitted")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise InvalidRequest(f"tools.{i}.input_schema: Field required")
            if schema.get("type") != "object":
                raise InvalidRequest(f"tools.{i}.input_schema.type: Input should be 'object'")
            names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in ("auto", "any", "tool", "none"):
            raise InvalidRequest("tool_choice: Input tag does not match any of the expected "
                                 "tags: 'auto', 'any', 'tool', 'none'")
        if kind == "tool" and choice.get("name") not in names:
            raise InvalidRequest(f"tool_choice: Tool '{choice.get('name')}' not found in "
                                 "provided tools")
    return names


def _validate_messages(messages: Any, tool_names: set[str]) -> None:
    if messages is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required")
    pending_tool_ids: set[str] = set()  # tool_use ids the next user turn must answer
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            raise InvalidRequest('messages: Unexpected role "system". The Messages API accepts '
                                 'a top-level `system` parameter, not "system" as an input '
                                 "message role.")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if set(message) - {"role", "content"}:
            extra = sorted(set(message) - {"role", "content"})[0]
            raise InvalidRequest(f"messages.{i}.{extra}: Extra inputs are not permitted")
        if i == 0 and role != "user":
            raise InvalidRequest('messages: first message must use the "user" role')
        if i > 0 and messages[i - 1].get("role") == role:
            raise InvalidRequest(f'messages: roles must alternate between "user" and '
                                 f'"assistant", but found multiple "{role}" roles in a row')
        content = message.get("content")
        final_assistant = role == "assistant" and i == len(messages) - 1
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = content
        else:
            raise InvalidRequest(f"messages.{i}.content: Input should be a valid list")
        if not blocks and not final_assistant:
            raise InvalidRequest(f"messages.{i}: all messages must have non-empty content "
                                 "except for the optional final assistant message")
        answered: set[str] = set()
        for j, block in enumerate(blocks):
            answered |= _validate_block(block, role, f"messages.{i}.content.{j}", tool_names,
                                        pending_tool_ids)
        if pending_tool_ids - answered:
            missing = ", ".join(sorted(pending_tool_ids - answered))
            raise InvalidRequest(f"messages.{i - 1}: `tool_use` ids were found without "
                                 f"`tool_result` blocks immediately after: {missing}. Each "
                                 "`tool_use` block must have a corresponding `tool_result` "
                                 "block in the next message.")
        pending_tool_ids = {b["id"] for b in blocks if b.get("type") == "tool_use"}


def _validate_block(block: Any, role: str, where: str, tool_names: set[str],
                    pending_tool_ids: set[str]) -> set[str]:
    """Check one content block; return the tool_use ids it answers."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        _validate_text(block, where)
    elif kind == "image":
        source = block.get("source")
        stype = source.get("type") if isinstance(source, dict) else None
        if stype == "base64":
            if source.get("media_type") not in _IMAGE_TYPES or \
                    not isinstance(source.get("data"), str):
                raise InvalidRequest(f"{where}.source.base64.media_type: Input should be "
                                     "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
        elif stype != "url" or not isinstance(source.get("url"), str):
            raise InvalidRequest(f"{where}.source: Input tag does not match any of the "
                                 "expected tags: 'base64', 'url'")
    elif kind == "document":
        source = block.get("source")
        stype = source.get("type") if isinstance(source, dict) else None
        if role != "user" or stype not in ("base64", "text", "url", "content"):
            raise InvalidRequest(f"{where}.source: Input tag does not match any of the "
                                 "expected tags: 'base64', 'text', 'url', 'content'")
    elif kind == "tool_use":
        if role != "assistant":
            raise InvalidRequest(f"{where}: tool_use blocks may only appear in assistant "
                                 "messages")
        if not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)
                and isinstance(block.get("input"), dict)):
            raise InvalidRequest(f"{where}: tool_use needs id, name and an input object")
        if block["name"] not in tool_names:
            raise InvalidRequest("Requests which include `tool_use` or `tool_result` blocks "
                                 "must define tools.")
    elif kind == "tool_result":
        if role != "user":
            raise InvalidRequest(f"{where}: tool_result blocks may only appear in user "
                                 "messages")
        tool_use_id = block.get("tool_use_id")
        if tool_use_id not in pending_tool_ids:
            raise InvalidRequest(f"{where}: unexpected `tool_use_id` found in `tool_result` "
                                 f"blocks: {tool_use_id}. Each `tool_result` block must have "
                                 "a corresponding `tool_use` block in the previous message.")
        content = block.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequest(f"{where}.content: Input should be a valid string or list")
        return {tool_use_id}
    else:
        raise InvalidRequest(f"{where}.type: Input tag {kind!r} does not match any of the "
                             "expected tags")
    return set()


@dataclass
class _Answer:
    pieces: list[str]  # text as streamed: words, each but the first with its leading space
    tools: list[ToolUse]
    stop_reason: str
    stop_sequence: str | None


def plan_answer(body: dict[str, Any], behaviour: Behaviour) -> _Answer:
    """What the fake model says to a (valid) request under a behaviour."""
    if behaviour.reply is not None:
        text = behaviour.reply
    else:
        text = "" if behaviour.tool_uses else reply_for(body["messages"])
    stop_reason, stop_sequence = ("tool_use" if behaviour.tool_uses else "end_turn"), None
    tools = list(behaviour.tool_uses)
    found = [(text.find(s), s) for s in body.get("stop_sequences") or () if s and s in text]
    if found:
        at, stop_sequence = min(found)
        text, stop_reason, tools = text[:at], "stop_sequence", []
    pieces = _WORD.findall(" ".join(text.split()))
    if len(pieces) + TOOL_USE_TOKENS * len(tools) > body["max_tokens"] \
            and not behaviour.ignore_max_tokens:
        pieces, stop_reason, stop_sequence, tools = \
            pieces[:body["max_tokens"]], "max_tokens", None, []
    return _Answer(pieces, tools, stop_reason, stop_sequence)


# ---------------------------------------------------------------------- the fake


class _DroppedByServer(Exception):
    """We aborted the connection on purpose (drop_after_deltas)."""


class FakeAnthropic:
    """A real HTTP server on 127.0.0.1 that impersonates api.anthropic.com."""

    def __init__(self, models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
                 api_keys: set[str] | None = None) -> None:
        self.models: list[str] = list(models)
        self.api_keys = api_keys  # None: any non-empty key is accepted
        self.default = Behaviour()
        self.received: list[ReceivedRequest] = []
        self.calls = 0
        self.connections_closed_by_client = 0
        self.models_calls = 0
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._lock = threading.Lock()
        self._seq = 0
        self._server = ServerThread(self._make_app())

    # ------------------------------------------------------------------ control API

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no /v1, like https://api.anthropic.com)."""
        return self._server.url

    def start(self) -> FakeAnthropic:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each valid messages request consumes one, in order
        (then ``self.default``)."""
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Clear the script, received requests, counters and the default behaviour."""
        with self._lock:
            self._queue.clear()
            self.received.clear()
            self.calls = 0
            self.connections_closed_by_client = 0
            self.models_calls = 0
            self.default = Behaviour()

    @property
    def last(self) -> ReceivedRequest:
        return self.received[-1]

    def wait_for(self, predicate: Any, timeout: float = 2.0, interval: float = 0.005) -> bool:
        """Poll ``predicate()`` until truthy or ``timeout``; returns the final result."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return bool(predicate())
            time.sleep(interval)

    # ------------------------------------------------------------------ internals

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        app.router.add_get("/v1/models", self._handle_models)
        return app

    def _next_ids(self) -> tuple[str, str]:
        with self._lock:
            self._seq += 1
            n = self._seq
        return f"msg_fake{n:016d}", f"req_fake{n:020d}"

    @staticmethod
    def _error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
               ) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(body),
                            content_type="application/json",
                            headers={"request-id": body.get("request_id", "req_fake"),
                                     **(headers or {})})

    def _check_headers(self, headers: dict[str, str]) -> web.Response | None:
        key = headers.get("x-api-key")
        if not key:
            return self._error(401, error_body(401, message="x-api-key header is required"))
        if self.api_keys is not None and key not in self.api_keys:
            return self._error(401, error_body(401, message="invalid x-api-key"))
        if not headers.get("anthropic-version"):
            return self._error(400, error_body(
                400, message="anthropic-version: header is required"))
        return None

    async def _handle_models(self, request: web.Request) -> web.Response:
        with self._lock:
            self.models_calls += 1
        refused = self._check_headers({k.lower(): v for k, v in request.headers.items()})
        if refused is not None:
            return refused
        limit = int(request.query.get("limit", "20"))
        after = request.query.get("after_id")
        start = self.models.index(after) + 1 if after in self.models else 0
        page = self.models[start:start + limit]
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in page]
        return web.Response(body=orjson.dumps({
            "data": data, "has_more": start + limit < len(self.models),
            "first_id": page[0] if page else None, "last_id": page[-1] if page else None}),
            content_type="application/json")

    async def _receive(self, request: web.Request
                       ) -> tuple[ReceivedRequest, Any, web.Response | None]:
        """Read and keep one request: (its record, its JSON or None, a 401/400 for missing
        headers or None)."""
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        rec = ReceivedRequest(body=body if isinstance(body, dict) else None, raw=raw,
                              headers=headers, path=request.path,
                              query=request.query_string)
        with self._lock:
            self.received.append(rec)
            self.calls += 1
        return rec, body, self._check_headers(headers)

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        rec, body, refused = await self._receive(request)
        if refused is not None:
            return refused
        try:
            validate(body)
        except InvalidRequest as exc:
            rec.rejection = str(exc)
            return self._error(400, error_body(400, message=str(exc)))

        behaviour = self._next_behaviour()
        rec.behaviour = behaviour
        message_id, request_id = self._next_ids()
        try:
            if behaviour.hang > 0:
                await asyncio.sleep(behaviour.hang)
            if behaviour.status != 200:
                extra = dict(behaviour.headers)
                if behaviour.retry_after is not None:
                    extra["retry-after"] = behaviour.retry_after
                return self._error(behaviour.status, error_body(
                    behaviour.status, behaviour.error_type, behaviour.error_message,
                    request_id), extra)
            if behaviour.oversized is not None:
                return await self._oversized(request, body, behaviour, message_id)
            answer = plan_answer(body, behaviour)
            if body.get("stream") is True and not behaviour.json_for_stream:
                return await self._stream(request, body, behaviour, answer, message_id,
                                          request_id)
            return self._message(body, behaviour, answer, message_id, request_id)
        except _DroppedByServer:
            raise asyncio.CancelledError() from None
        except asyncio.CancelledError:
            # The client went away (handler cancellation), unless the server is stopping.
            if self._server.running:
                self._count_client_gone()
            raise
        except ConnectionResetError:
            if self._server.running:
                self._count_client_gone()
            raise asyncio.CancelledError() from None

    async def _handle_count_tokens(self, request: web.Request) -> web.Response:
        """``{"input_tokens": n}`` by ``count_input_tokens``; ``max_tokens`` not required.
        Consumes a scripted behaviour only for its ``status``."""
        rec, body, refused = await self._receive(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
                or not body.get("model"):
            return self._error(400, error_body(400, message="model and messages are required"))
        behaviour = rec.behaviour = self._next_behaviour()
        if behaviour.status != 200:
            return self._error(behaviour.status, error_body(
                behaviour.status, behaviour.error_type, behaviour.error_message))
        return web.Response(body=orjson.dumps({"input_tokens": count_input_tokens(body)}),
                            content_type="application/json")

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    async def _oversized(self, request: web.Request, body: dict[str, Any],
                         behaviour: Behaviour, message_id: str) -> web.StreamResponse:
        size = behaviour.oversized or 0
        stream = body.get("stream") is True
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream" if stream else "application/json"})
        await resp.prepare(request)
        message = {"id": message_id, "type": "message", "role": "assistant",
                   "model": body["model"], "stop_sequence": None,
                   "usage": self._usage(body, behaviour, 1)}
        if stream:
            await resp.write(_sse("message_start", {"type": "message_start", "message": {
                **message, "content": [], "stop_reason": None}}))
            await resp.write(_sse("content_block_start", {
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}))
            for word in reply_for(body["messages"]).split()[:behaviour.oversized_after_deltas]:
                await resp.write(_sse("content_block_delta", {
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": word + " "}}))
            await write_padded(resp, b'event: content_block_delta\ndata: {"type": '
                               b'"content_block_delta", "index": 0, "delta": {"type": '
                               b'"text_delta", "text": "', size, b'"}}\n\n')
        else:
            await write_padded(resp, orjson.dumps({**message, "stop_reason": "end_turn"})[:-1]
                               + b', "content": [{"type": "text", "text": "', size, b'"}]}')
        await resp.write_eof()
        return resp

    def _count_client_gone(self) -> None:
        with self._lock:
            self.connections_closed_by_client += 1

    def _tool_ids(self, answer: _Answer) -> list[str]:
        ids = []
        for tool in answer.tools:
            if tool.id is None:
                with self._lock:
                    self._seq += 1
                    ids.append(f"toolu_fake{self._seq:016d}")
            else:
                ids.append(tool.id)
        return ids

    @staticmethod
    def _usage(body: dict[str, Any], behaviour: Behaviour, output_tokens: int
               ) -> dict[str, Any]:
        cached = behaviour.cache_read_tokens + behaviour.cache_creation_tokens
        return {"input_tokens": max(0, count_input_tokens(body) - cached),
                "cache_creation_input_tokens": behaviour.cache_creation_tokens,
                "cache_read_input_tokens": behaviour.cache_read_tokens,
                "output_tokens": output_tokens}

    def _message(self, body: dict[str, Any], behaviour: Behaviour, answer: _Answer,
                 message_id: str, request_id: str) -> web.Response:
        content: list[dict[str, Any]] = []
        if answer.pieces:
            content.append({"type": "text", "text": "".join(answer.pieces)})
        for tool, tool_id in zip(answer.tools, self._tool_ids(answer), strict=True):
            content.append({"type": "tool_use", "id": tool_id, "name": tool.name,
                            "input": tool.input})
        output = len(answer.pieces) + TOOL_USE_TOKENS * len(answer.tools)
        message = {"id": message_id, "type": "message", "role": "assistant",
                   "model": body["model"], "content": content,
                   "stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence,
                   "usage": self._usage(body, behaviour, output)}
        if behaviour.omit_usage:
            del message["usage"]
        return web.Response(body=orjson.dumps(message), content_type="application/json",
                            headers={"request-id": request_id, **behaviour.headers})

    async def _stream(self, request: web.Request, body: dict[str, Any], behaviour: Behaviour,
                      answer: _Answer, message_id: str, request_id: str) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
            "request-id": request_id, **behaviour.headers})
        await resp.prepare(request)
        sent = 0

        async def send(kind: str, data: dict[str, Any]) -> None:
            nonlocal sent
            delay = behaviour.first_event_delay if sent == 0 else behaviour.event_delay
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.write(_sse(kind, {"type": kind, **data}))
            sent += 1

        async def fail() -> web.StreamResponse:
            kind = behaviour.error_event_type
            message = behaviour.error_message or (
                "Overloaded" if kind == "overloaded_error" else "Internal server error")
            await send("error", {"error": {"type": kind, "message": message}})
            await resp.write_eof()
            return resp

        if behaviour.error_event_after_deltas == -1:
            return await fail()
        await send("message_start", {"message": {
            "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": self._usage(body, behaviour, 1)}})
        index = 0
        if behaviour.pings and not answer.pieces:
            await send("ping", {})
        if answer.pieces:
            await send("content_block_start",
                       {"index": 0, "content_block": {"type": "text", "text": ""}})
            if behaviour.pings:
                await send("ping", {})
        for n, piece in enumerate(answer.pieces + [None]):
            if n == behaviour.drop_after_deltas:
                await self._abort(request)
            if n == behaviour.error_event_after_deltas:
                return await fail()
            if piece is not None:
                await send("content_block_delta",
                           {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        if answer.pieces:
            await send("content_block_stop", {"index": 0})
            index = 1
        for tool, tool_id in zip(answer.tools, self._tool_ids(answer), strict=True):
            await send("content_block_start", {"index": index, "content_block": {
                "type": "tool_use", "id": tool_id, "name": tool.name, "input": {}}})
            arguments = orjson.dumps(tool.input).decode() if tool.input else ""
            half = len(arguments) // 2
            parts = [""] + [p for p in (arguments[:half], arguments[half:]) if p]
            for part in parts:
                await send("content_block_delta", {"index": index, "delta": {
                    "type": "input_json_delta", "partial_json": part}})
            await send("content_block_stop", {"index": index})
            index += 1
        if behaviour.drop_after_deltas is not None:
            await self._abort(request)
        final: dict[str, Any] = {
            "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}}
        if not behaviour.omit_usage:
            final["usage"] = {
                "output_tokens": len(answer.pieces) + TOOL_USE_TOKENS * len(answer.tools)}
        await send("message_delta", final)
        if not behaviour.omit_message_stop:
            await send("message_stop", {})
        await resp.write_eof()
        return resp

    @staticmethod
    async def _abort(request: web.Request) -> None:
        """Abort the TCP connection mid-body, after the kernel has taken what we wrote."""
        transport = request.transport
        if transport is not None:
            for _ in range(200):
                if transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.005)
            transport.abort()
        raise _DroppedByServer()
