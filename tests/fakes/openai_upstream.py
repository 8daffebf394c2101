"""A fake OpenAI-compatible upstream: a real HTTP server speaking OpenAI's wire format.

    with FakeOpenAI() as upstream:
        upstream.script(Behaviour(status=429, retry_after="1"), Behaviour())
        client = openai.OpenAI(base_url=upstream.base_url, api_key="sk-provider")
        ...
        assert upstream.received[0].api_key == "sk-provider"

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE), ``POST /v1/responses`` (JSON or SSE,
the Responses wire format: see openai_responses.py), ``GET /v1/models``, and the rest of the
surface in tests/fakes/openai_surface.py (embeddings, legacy completions, stored chat
completions, ``GET /v1/models/{id}``, files). All require ``Authorization: Bearer
<non-empty>``, else 401 in OpenAI's error shape. Scripted behaviours apply to every endpoint.

Replies are deterministic. One word = one token:

* reply text: ``Behaviour.reply`` or ``reply_for(messages)`` =
  ``"Echo: <first 40 chars of last user message>. This is a deterministic reply from the
  fake upstream."``; it is split on whitespace and re-joined with single spaces;
* ``max_completion_tokens`` (else ``max_tokens``) truncates to that many words, with
  ``finish_reason="length"``; otherwise ``"stop"``; a reasoning model (``o1``…, ``o4-mini``,
  ``gpt-5``…: ``REASONING_MODEL``) refuses ``max_tokens`` with OpenAI's own 400
  (``unsupported_parameter``);
* ``prompt_tokens = words in all message contents + 3 * len(messages) + 3``
  (see ``count_prompt_tokens``), ``completion_tokens = words emitted``.

Streaming emits exactly OpenAI's sequence of ``chat.completion.chunk`` events: a role
chunk (``delta={"role": "assistant", "content": "", "refusal": null}``), one chunk per
word (leading space on every word but the first), a chunk with an empty delta and the
finish_reason, then - only if ``stream_options.include_usage`` - a ``"choices": []``
chunk carrying usage (and every earlier chunk carries ``"usage": null``), then
``data: [DONE]``.
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
import pydantic
from aiohttp import web

from tests.fakes import openai_responses as responses_wire
from tests.fakes.openai_surface import SurfaceRoutes
from tests.fakes.oversized import write_padded
from tests.fakes.server_thread import ServerThread

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini")
#: Models that refuse `max_tokens` in chat completions, as OpenAI's reasoning models do.
REASONING_MODEL = re.compile(r"(o\d|gpt-5)(\b|-)")
SYSTEM_FINGERPRINT = "fp_fa4e0000ed"
REPLY_SUFFIX = "This is a deterministic reply from the fake upstream."

# Realistic OpenAI error (type, code) per status when the Behaviour doesn't say.
_DEFAULT_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_denied", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("server_error", "timeout", "Request timed out."),
    409: ("invalid_request_error", "conflict", "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: (
        "server_error",
        "service_unavailable",
        "The engine is currently overloaded, please try again later.",
    ),
    504: ("server_error", "gateway_timeout", "Gateway timeout."),
}


@dataclass
class Behaviour:
    """How the fake answers one chat request. Defaults = a well-behaved OpenAI."""

    status: int = 200
    """Non-200: answer ``{"error": {"message", "type", "code", "param"}}`` with this status."""
    error_type: str | None = None
    """``error.type`` (default depends on status, e.g. 429 -> "requests", 5xx -> "server_error")."""
    retry_after: str | None = None
    """Sent as the ``Retry-After`` header with an error response."""
    hang: float = 0.0
    """Seconds to sleep before sending response headers (to trigger gateway timeouts)."""
    chunk_delay: float = 0.0
    """Stream: seconds to sleep between consecutive SSE events (including before [DONE])."""
    first_chunk_delay: float = 0.0
    """Stream: seconds to sleep after the headers are sent, before the first SSE event."""
    drop_after_chunks: int | None = None
    """Stream: send the role chunk and N content (word) chunks, then abort the TCP connection
    (broken chunked body: no finish chunk, no usage, no [DONE])."""
    send_usage: bool = True
    """False = never send usage: no usage chunk / ``usage`` keys in a stream even with
    ``include_usage``, and no ``usage`` key in a JSON response."""
    malformed_sse: bool = False
    """Stream: emit an invalid-JSON ``data:`` event after half of the word chunks."""
    reply: str | None = None
    """Override the reply text (still split into words and truncated by max_tokens)."""
    # --- extras -------------------------------------------------------------------
    error_code: str | None = None
    """``error.code`` (default depends on status)."""
    error_message: str | None = None
    """``error.message`` (default depends on status)."""
    error_param: str | None = None
    """``error.param``: the request field the error is about."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers (any status, JSON or stream)."""
    honour_n: bool = False
    """Answer ``n`` choices (as OpenAI does), each the same reply; usage counts them all."""
    ignore_max_tokens: bool = False
    """Ignore ``max_tokens`` / ``max_completion_tokens``: the whole reply, always."""
    usage: dict[str, Any] | None = None
    """Report this ``usage`` object instead of the true counts (JSON and stream)."""
    json_for_stream: bool = False
    """Answer a stream request with a JSON body (``application/json``), as some servers do."""
    oversized: int | None = None
    """JSON: the reply's content is this many bytes of "x" (chunked, no Content-Length unless
    ``oversized_declared``); stream: after ``oversized_after_chunks`` word chunks, one event
    with this many bytes of content. Written a MiB at a time: the fake never holds it."""
    oversized_after_chunks: int = 0
    oversized_declared: bool = False
    tool_call: dict[str, str] | None = None
    """Chat and Responses: answer one function call (``{"name": ..., "arguments": "..."}``),
    no text (chat: ``tool_calls``, finish_reason ``tool_calls``; a stream sends the call's
    id and name, then its arguments a space-separated piece a chunk). Billed: one token for
    the name and one a piece of the arguments."""
    raw_body: bytes | None = None
    """Responses: answer 200 with these bytes as the JSON body, whatever they are."""
    reasoning: str | None = None
    """Chat: think first, as DeepSeek and vLLM do: this text as ``message.reasoning_content``,
    or streamed a word a chunk as ``delta.reasoning_content`` before the reply. Its words are
    completion tokens (``completion_tokens_details.reasoning_tokens``), and the output limit
    covers them first, as ``max_completion_tokens`` does."""
    raw_event_after_chunks: tuple[int, bytes] | None = None
    """Chat stream: after N word chunks, these bytes as one ``data:`` value, then ``[DONE]``
    and the end: an upstream's own error event as it wrote it, JSON escapes and all."""
    error_event_after_chunks: int | None = None
    """Responses stream: after N text deltas, an ``error`` event (``error_code``,
    ``error_message``) and the end of the stream, as OpenAI does when generation fails."""


@dataclass
class ReceivedRequest:
    """One chat request as the fake saw it."""

    body: dict[str, Any] | None  # parsed JSON (None if it wasn't valid JSON)
    raw: bytes
    headers: dict[str, str]  # lower-cased names
    api_key: str | None  # the Bearer token, None if absent/empty
    path: str = "/v1/chat/completions"
    behaviour: Behaviour | None = None  # what the fake did (None: rejected before scripting)
    method: str = "POST"
    query: str = ""  # the query string as received
    sent: bytearray = field(default_factory=bytearray)  # a Responses stream's body, as sent

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


# ---------------------------------------------------------------------- pure helpers


def _text_of(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def count_prompt_tokens(messages: list[Any]) -> int:
    """Words across all message contents + 3 per message + 3 (OpenAI-ish priming)."""
    words = sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))
    return words + 3 * len(messages) + 3


def prompt_tokens_for(body: dict[str, Any]) -> int:
    """What the fake bills for a request's prompt: its messages (see count_prompt_tokens),
    plus tools and schemas at four bytes of their JSON a token, as OpenAI bills them."""
    extra = sum(len(orjson.dumps(body[name])) for name in ("tools", "functions",
                                                            "response_format")
                if body.get(name) is not None)
    return count_prompt_tokens(body["messages"]) + extra // 4


def reply_for(messages: list[Any]) -> str:
    """The default deterministic reply to ``messages``."""
    last_user = ""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            last_user = _text_of(m.get("content"))
            break
    return f"Echo: {last_user[:40]}. {REPLY_SUFFIX}"


def reply_words(body: dict[str, Any], behaviour: Behaviour) -> tuple[list[str], str]:
    """(words to emit, finish_reason) for a request under a behaviour."""
    _, words, finish = answer_words(body, behaviour)
    return words, finish


def answer_words(body: dict[str, Any], behaviour: Behaviour
                 ) -> tuple[list[str], list[str], str]:
    """(reasoning words, reply words, finish_reason): the output limit cuts the reasoning
    first, then the reply."""
    messages = body.get("messages") or []
    text = behaviour.reply if behaviour.reply is not None else reply_for(messages)
    thought, words = (behaviour.reasoning or "").split(), text.split()
    if behaviour.ignore_max_tokens:
        return thought, words, "stop"
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) \
            and 0 <= limit < len(thought) + len(words):
        return thought[:limit], words[:max(0, limit - len(thought))], "length"
    return thought, words, "stop"


def choices_for(body: dict[str, Any], behaviour: Behaviour) -> int:
    """How many choices to answer: ``n`` when the behaviour honours it, read by pydantic in
    lax mode as pydantic-based servers (vLLM) read it: "50", "50.0" and "5_0" are 50; else one."""
    try:
        n = _LAX_INT.validate_python(body.get("n"))
    except pydantic.ValidationError:
        return 1
    return n if behaviour.honour_n and n > 1 else 1


_LAX_INT = pydantic.TypeAdapter(int)


def usage_object(prompt_tokens: int, completion_tokens: int,
                 reasoning_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def error_body(
    status: int,
    *,
    message: str | None = None,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    d_type, d_code, d_message = _DEFAULT_ERRORS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}"),
    )
    return {
        "error": {
            "message": message if message is not None else d_message,
            "type": type_ if type_ is not None else d_type,
            "param": param,
            "code": code if code is not None else d_code,
        }
    }


def _call_id(completion_id: str) -> str:
    return "call_" + completion_id.removeprefix("chatcmpl-")


def _call_tokens(call: dict[str, str]) -> int:
    """What a scripted tool call bills: its name, and each piece of its arguments."""
    return 1 + len(call["arguments"].split(" "))


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
MALFORMED_SSE_EVENT = b'data: {"id": "chatcmpl-garbage", "choices": [ {{{ not json\n\n'


class _DroppedByServer(Exception):
    """We aborted the connection on purpose (drop_after_chunks)."""


# ---------------------------------------------------------------------- the fake


class FakeOpenAI:
    """A real HTTP server on 127.0.0.1 that impersonates api.openai.com/v1."""

    def __init__(self, models: tuple[str, ...] | list[str] = DEFAULT_MODELS) -> None:
        self.models: list[str] = list(models)
        self.default = Behaviour()
        self.received: list[ReceivedRequest] = []
        self.calls = 0
        self.connections_closed_by_client = 0
        self.models_calls = 0
        self._queue: collections.deque[Behaviour] = collections.deque()
        #: Responses kept as OpenAI keeps them (unless `store: false`), by id, with their input.
        self.stored: dict[str, tuple[dict[str, Any], Any]] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self.surface = SurfaceRoutes(self)
        self._server = ServerThread(self._make_app())

    # ------------------------------------------------------------------ control API

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return self._server.url + "/v1"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no /v1)."""
        return self._server.url

    def start(self) -> FakeOpenAI:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each authorized chat request consumes one, in order.

        When the queue is empty, ``self.default`` is used.
        """
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def pending(self) -> int:
        """Scripted behaviours not consumed yet."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Clear the script queue, received requests, counters and the default behaviour."""
        with self._lock:
            self._queue.clear()
            self.received.clear()
            self.calls = 0
            self.connections_closed_by_client = 0
            self.models_calls = 0
            self.default = Behaviour()
            self.stored.clear()
            self.surface.stored.clear()
            self.surface.stored_messages.clear()

    @property
    def last(self) -> ReceivedRequest:
        return self.received[-1]

    def wait_for(self, predicate: Any, timeout: float = 2.0, interval: float = 0.005) -> bool:
        """Poll ``predicate()`` until truthy or ``timeout``; returns the final result.

        Disconnects are observed asynchronously by the server thread, so e.g.
        ``fake.wait_for(lambda: fake.connections_closed_by_client == 1)``.
        """
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return bool(predicate())
            time.sleep(interval)

    # ------------------------------------------------------------------ internals

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _next_id(self) -> tuple[str, str]:
        with self._lock:
            self._seq += 1
            n = self._seq
        return f"chatcmpl-fake{n:016d}", f"req_fake{n:024x}"

    def _count_client_gone(self) -> None:
        with self._lock:
            self.connections_closed_by_client += 1

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_post("/v1/responses", self._handle_responses)
        app.router.add_post("/v1/responses/input_tokens", self._handle_input_tokens)
        app.router.add_get("/v1/responses/{id}", self._handle_stored)
        app.router.add_delete("/v1/responses/{id}", self._handle_stored)
        app.router.add_post("/v1/responses/{id}/cancel", self._handle_stored)
        app.router.add_get("/v1/responses/{id}/input_items", self._handle_stored)
        app.router.add_get("/v1/models", self._handle_models)
        self.surface.add_to(app)
        return app

    # ------------------------------------------------------------------ for SurfaceRoutes

    async def record(self, request: web.Request) -> ReceivedRequest:
        """Keep a request as received (body parsed when it is a JSON object)."""
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        rec = ReceivedRequest(body=body if isinstance(body, dict) else None, raw=raw,
                              headers={k.lower(): v for k, v in request.headers.items()},
                              api_key=self._api_key(request), path=request.path,
                              method=request.method, query=request.query_string)
        with self._lock:
            self.received.append(rec)
            self.calls += 1
        return rec

    def next_behaviour(self) -> Behaviour:
        return self._next_behaviour()

    def unauthorized(self) -> web.Response:
        return self._unauthorized()

    def json_error(self, status: int, body: dict[str, Any]) -> web.Response:
        return self._json_error(status, body)

    def error_answer(self, behaviour: Behaviour) -> web.Response:
        return self._error_response(behaviour, self._next_id()[1])

    async def abort(self, request: web.Request) -> None:
        """Break the connection mid-body (raises what ends the handler quietly)."""
        try:
            await self._abort(request)
        except _DroppedByServer:
            raise asyncio.CancelledError() from None

    @staticmethod
    def _api_key(request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        return token

    @staticmethod
    def _json_error(
        status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            status=status,
            body=orjson.dumps(body),
            content_type="application/json",
            headers=headers or {},
        )

    def _unauthorized(self) -> web.Response:
        return self._json_error(
            401,
            error_body(
                401,
                message=(
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                ),
                code=None,
            ),
        )

    async def _handle_models(self, request: web.Request) -> web.StreamResponse:
        self.models_calls += 1
        if self._api_key(request) is None:
            return self._unauthorized()
        data = [
            {"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
            for m in self.models
        ]
        return web.Response(
            body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
        )

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        api_key = self._api_key(request)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        rec = ReceivedRequest(
            body=body if isinstance(body, dict) else None,
            raw=raw,
            headers=headers,
            api_key=api_key,
            path=request.path,
        )
        with self._lock:
            self.received.append(rec)
            self.calls += 1

        if api_key is None:
            return self._unauthorized()
        if not isinstance(body, dict):
            return self._json_error(
                400,
                error_body(
                    400,
                    message="We could not parse the JSON body of your request.",
                    code=None,
                ),
            )
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._json_error(
                400,
                error_body(
                    400,
                    message="Missing required parameter: 'messages'.",
                    code="missing_required_parameter",
                    param="messages",
                ),
            )
        if not isinstance(body.get("model"), str):
            return self._json_error(
                400,
                error_body(
                    400,
                    message="Missing required parameter: 'model'.",
                    code="missing_required_parameter",
                    param="model",
                ),
            )

        if "max_tokens" in body and REASONING_MODEL.match(body["model"]):
            return self._json_error(400, error_body(
                400, message="Unsupported parameter: 'max_tokens' is not supported with this "
                "model. Use 'max_completion_tokens' instead.", code="unsupported_parameter",
                param="max_tokens"))
        behaviour = self._next_behaviour()
        rec.behaviour = behaviour
        completion_id, request_id = self._next_id()
        try:
            if behaviour.hang > 0:
                await asyncio.sleep(behaviour.hang)
            if behaviour.status != 200:
                return self._error_response(behaviour, request_id)
            if behaviour.oversized is not None:
                return await self._oversized(request, body, behaviour, completion_id)
            if body.get("stream") is True and not behaviour.json_for_stream:
                return await self._stream(request, body, behaviour, completion_id, request_id)
            return self._completion(body, behaviour, completion_id, request_id)
        except _DroppedByServer:
            # Transport already aborted; CancelledError makes aiohttp drop the connection
            # quietly (no error log, no attempt to finish the response).
            raise asyncio.CancelledError() from None
        except asyncio.CancelledError:
            # Handler cancelled: the client disconnected (ServerThread enables aiohttp's
            # handler_cancellation) - or the server is shutting down, which doesn't count.
            if self._server.running:
                self._count_client_gone()
            raise
        except ConnectionResetError:
            # A write hit a transport the client already closed.
            if self._server.running:
                self._count_client_gone()
            raise asyncio.CancelledError() from None

    async def _handle_responses(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        api_key = self._api_key(request)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        rec = ReceivedRequest(body=body if isinstance(body, dict) else None, raw=raw,
                              headers={k.lower(): v for k, v in request.headers.items()},
                              api_key=api_key, path=request.path)
        with self._lock:
            self.received.append(rec)
            self.calls += 1
        if api_key is None:
            return self._unauthorized()
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return self._json_error(400, error_body(
                400, message="Missing required parameter: 'model'.",
                code="missing_required_parameter", param="model"))
        behaviour = self._next_behaviour()
        rec.behaviour = behaviour
        response_id = "resp_" + self._next_id()[0].removeprefix("chatcmpl-")
        request_id = "req_" + response_id[5:]
        try:
            if behaviour.hang > 0:
                await asyncio.sleep(behaviour.hang)
            if behaviour.status != 200:
                return self._error_response(behaviour, request_id)
            if behaviour.raw_body is not None:
                return web.Response(body=behaviour.raw_body, content_type="application/json")
            if body.get("stream") is True and not behaviour.json_for_stream:
                return await self._responses_stream(request, body, behaviour, response_id,
                                                    rec.sent)
            words, cut = responses_wire.reply_words(body, behaviour.reply,
                                                    behaviour.ignore_max_tokens)
            if behaviour.tool_call is not None:
                output = [responses_wire.call_item("fc_" + response_id[5:], behaviour.tool_call)]
                spent = len(behaviour.tool_call["arguments"].split()) + 1
            else:
                output = [responses_wire.message_item("msg_" + response_id[5:], " ".join(words))]
                spent = len(words)
            usage = behaviour.usage or responses_wire.usage(body, spent)
            obj = responses_wire.response_object(
                body, response_id, status="incomplete" if cut else "completed", output=output,
                usage_=usage if behaviour.send_usage else None)
            if body.get("store") is not False:
                self.stored[response_id] = (obj, body.get("input"))
            return web.Response(body=orjson.dumps(obj), content_type="application/json",
                                headers={"x-request-id": request_id, **behaviour.headers})
        except _DroppedByServer:
            raise asyncio.CancelledError() from None
        except (asyncio.CancelledError, ConnectionResetError):
            if self._server.running:
                self._count_client_gone()
            raise asyncio.CancelledError() from None

    async def _handle_stored(self, request: web.Request) -> web.StreamResponse:
        """A stored response: GET it, DELETE it, cancel it, list its input items."""
        self.received.append(ReceivedRequest(
            body=None, raw=await request.read(), path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            api_key=self._api_key(request)))
        if self._api_key(request) is None:
            return self._unauthorized()
        response_id = request.match_info["id"]
        if response_id not in self.stored:
            return self._json_error(404, error_body(
                404, message=f"Response with id '{response_id}' not found.", code=None,
                param="response_id"))
        obj, items = self.stored[response_id]
        if request.method == "DELETE":
            del self.stored[response_id]
            answer: dict[str, Any] = {"id": response_id, "object": "response.deleted",
                                      "deleted": True}
        elif request.path.endswith("/cancel"):
            answer = {**obj, "status": "cancelled"}
        elif request.path.endswith("/input_items"):
            items = [{"role": "user", "content": items}] if isinstance(items, str) else items
            answer = {"object": "list", "data": list(items or ()), "has_more": False,
                      "first_id": None, "last_id": None}
        else:
            answer = obj
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _handle_input_tokens(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.received.append(ReceivedRequest(body=body, raw=b"", path=request.path,
                                             headers={}, api_key=self._api_key(request)))
        return web.Response(body=orjson.dumps({"object": "response.input_tokens",
                                               "input_tokens": responses_wire.input_tokens(
                                                   {"model": "", **body})}),
                            content_type="application/json")

    async def _responses_stream(self, request: web.Request, body: dict[str, Any],
                                behaviour: Behaviour, response_id: str,
                                sent_bytes: bytearray) -> web.StreamResponse:
        wire = responses_wire
        words, cut = wire.reply_words(body, behaviour.reply, behaviour.ignore_max_tokens)
        event = wire.EventNumbers()
        created = int(time.time())

        def response(status: str, output: list, usage: dict | None) -> dict[str, Any]:
            return wire.response_object(body, response_id, status=status, output=output,
                                        usage_=usage, created=created)

        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
            **behaviour.headers})
        await resp.prepare(request)
        sent = 0

        async def send(payload: dict[str, Any] | bytes) -> None:
            nonlocal sent
            delay = behaviour.first_chunk_delay if sent == 0 else behaviour.chunk_delay
            if delay > 0:
                await asyncio.sleep(delay)
            frame = payload if isinstance(payload, bytes) else wire.sse(payload)
            sent_bytes.extend(frame)
            await resp.write(frame)
            sent += 1

        await send(event("response.created", response=response("in_progress", [], None)))
        await send(event("response.in_progress", response=response("in_progress", [], None)))
        if behaviour.tool_call is not None:
            item_id = "fc_" + response_id[5:]
            call = behaviour.tool_call
            await send(event("response.output_item.added", output_index=0,
                             item=wire.call_item(item_id, call, "", "in_progress")))
            pieces = call["arguments"].split(" ")
            for i, piece in enumerate(pieces):
                await send(event("response.function_call_arguments.delta", item_id=item_id,
                                 output_index=0, delta=piece if i == 0 else " " + piece))
            await send(event("response.function_call_arguments.done", item_id=item_id,
                             output_index=0, name=call["name"], arguments=call["arguments"]))
            item = wire.call_item(item_id, call)
            await send(event("response.output_item.done", output_index=0, item=item))
            spent = len(pieces) + 1
        else:
            item_id = "msg_" + response_id[5:]
            await send(event("response.output_item.added", output_index=0,
                             item=wire.message_item(item_id, None, "in_progress")))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            await send(event("response.content_part.added", item_id=item_id, output_index=0,
                             content_index=0, part=part))
            garbage_at = len(words) // 2 if behaviour.malformed_sse else -1
            for i, word in enumerate(words):
                if behaviour.drop_after_chunks is not None and i >= behaviour.drop_after_chunks:
                    await self._abort(request)
                if i == behaviour.error_event_after_chunks:
                    await send(event("error", code=behaviour.error_code or "server_error",
                                     message=behaviour.error_message or "The server had an "
                                     "error while processing your request.", param=None))
                    await resp.write_eof()
                    return resp
                if i == garbage_at:
                    await send(b"event: response.output_text.delta\ndata: {\"type\": {{ no\n\n")
                await send(event("response.output_text.delta", item_id=item_id,
                                 output_index=0, content_index=0,
                                 delta=word if i == 0 else " " + word, logprobs=[]))
            if behaviour.drop_after_chunks is not None:
                await self._abort(request)
            text = " ".join(words)
            await send(event("response.output_text.done", item_id=item_id, output_index=0,
                             content_index=0, text=text, logprobs=[]))
            await send(event("response.content_part.done", item_id=item_id, output_index=0,
                             content_index=0, part={**part, "text": text}))
            item = wire.message_item(item_id, text)
            await send(event("response.output_item.done", output_index=0, item=item))
            spent = len(words)
        usage = (behaviour.usage or wire.usage(body, spent)) if behaviour.send_usage else None
        status = "incomplete" if cut else "completed"
        await send(event("response." + status, response=response(status, [item], usage)))
        await resp.write_eof()
        return resp

    def _error_response(self, behaviour: Behaviour, request_id: str) -> web.Response:
        headers = {"x-request-id": request_id, **behaviour.headers}
        if behaviour.retry_after is not None:
            headers["Retry-After"] = behaviour.retry_after
        body = error_body(
            behaviour.status,
            message=behaviour.error_message,
            type_=behaviour.error_type,
            code=behaviour.error_code,
            param=behaviour.error_param,
        )
        return self._json_error(behaviour.status, body, headers)

    def _completion(
        self, body: dict[str, Any], behaviour: Behaviour, completion_id: str, request_id: str
    ) -> web.Response:
        thought, words, finish_reason = answer_words(body, behaviour)
        n = choices_for(body, behaviour)
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(words),
                                   "refusal": None, "annotations": []}
        if thought:
            message["reasoning_content"] = " ".join(thought)
        spent = len(thought) + len(words)
        call = behaviour.tool_call
        if call is not None:
            message["content"] = None
            message["tool_calls"] = [{"id": _call_id(completion_id), "type": "function",
                                      "function": dict(call)}]
            finish_reason = "tool_calls"
            spent = len(thought) + _call_tokens(call)
        obj: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
                for index in range(n)
            ],
            "usage": behaviour.usage or usage_object(prompt_tokens_for(body), n * spent,
                                                     n * len(thought)),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        if not behaviour.send_usage:
            del obj["usage"]
        self.surface.keep(body, obj)
        return web.Response(
            body=orjson.dumps(obj),
            content_type="application/json",
            headers={"x-request-id": request_id, **behaviour.headers},
        )

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        behaviour: Behaviour,
        completion_id: str,
        request_id: str,
    ) -> web.StreamResponse:
        thought, words, finish_reason = answer_words(body, behaviour)
        stream_options = body.get("stream_options")
        include_usage = (
            behaviour.send_usage
            and isinstance(stream_options, dict)
            and stream_options.get("include_usage") is True
        )
        created = int(time.time())
        model = body["model"]

        def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": choices,
            }
            if include_usage:
                c["usage"] = None
            return c

        n = choices_for(body, behaviour)

        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                    for index in range(n)]

        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "x-request-id": request_id,
                **behaviour.headers,
            },
        )
        await resp.prepare(request)  # StreamResponse flushes the headers right away

        sent_events = 0

        async def send(data: bytes) -> None:
            nonlocal sent_events
            delay = behaviour.first_chunk_delay if sent_events == 0 else behaviour.chunk_delay
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.write(data)
            sent_events += 1

        await send(_sse(chunk(choice({"role": "assistant", "content": "", "refusal": None}))))
        for i, word in enumerate(thought):
            await send(_sse(chunk(choice({"reasoning_content": word if i == 0 else " " + word}))))
        spent = len(thought) + len(words)
        call = behaviour.tool_call
        if call is not None:
            words, finish_reason = [], "tool_calls"
            spent = len(thought) + _call_tokens(call)
            await send(_sse(chunk(choice({"tool_calls": [{
                "index": 0, "id": _call_id(completion_id), "type": "function",
                "function": {"name": call["name"], "arguments": ""}}]}))))
            for i, piece in enumerate(call["arguments"].split(" ")):
                await send(_sse(chunk(choice({"tool_calls": [{"index": 0, "function": {
                    "arguments": piece if i == 0 else " " + piece}}]}))))
        garbage_at = len(words) // 2 if behaviour.malformed_sse else -1
        for i, word in enumerate(words):
            if behaviour.drop_after_chunks is not None and i >= behaviour.drop_after_chunks:
                await self._abort(request)
            if i == garbage_at:
                await send(MALFORMED_SSE_EVENT)
            if behaviour.raw_event_after_chunks is not None and \
                    i == behaviour.raw_event_after_chunks[0]:
                await send(b"data: " + behaviour.raw_event_after_chunks[1] + b"\n\n" + SSE_DONE)
                await resp.write_eof()
                return resp
            await send(_sse(chunk(choice({"content": word if i == 0 else " " + word}))))
        if behaviour.drop_after_chunks is not None:
            # N >= number of words: still drop before the finish chunk.
            await self._abort(request)
        if garbage_at == len(words):  # no words at all: still emit the garbage
            await send(MALFORMED_SSE_EVENT)
        await send(_sse(chunk(choice({}, finish_reason))))
        if include_usage:
            final = chunk([])
            final["usage"] = behaviour.usage or usage_object(
                prompt_tokens_for(body), n * spent, n * len(thought))
            await send(_sse(final))
        await send(SSE_DONE)
        await resp.write_eof()
        return resp

    async def _oversized(self, request: web.Request, body: dict[str, Any],
                         behaviour: Behaviour, completion_id: str) -> web.StreamResponse:
        size = behaviour.oversized or 0
        head = {"id": completion_id, "created": int(time.time()), "model": body["model"]}
        stream = body.get("stream") is True
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream" if stream else "application/json"})
        if stream:
            await resp.prepare(request)
            words = reply_words(body, behaviour)[0][:behaviour.oversized_after_chunks]
            for word in words:
                await resp.write(_sse({**head, "object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {"content": word}, "finish_reason": None}]}))
            prefix = b"data: " + orjson.dumps({**head, "object": "chat.completion.chunk"}
                                              )[:-1] + b', "choices": [{"index": 0, "delta": ' \
                b'{"content": "'
            await write_padded(resp, prefix, size, b'"}, "finish_reason": null}]}\n\n')
            await resp.write(SSE_DONE)
        else:
            prefix = orjson.dumps({**head, "object": "chat.completion"})[:-1] + \
                b', "choices": [{"index": 0, "message": {"role": "assistant", "content": "'
            suffix = b'"}, "finish_reason": "stop"}], "usage": ' + orjson.dumps(
                usage_object(count_prompt_tokens(body["messages"]), size)) + b"}"
            if behaviour.oversized_declared:
                resp.content_length = len(prefix) + size + len(suffix)
            await resp.prepare(request)
            await write_padded(resp, prefix, size, suffix)
        await resp.write_eof()
        return resp

    @staticmethod
    async def _abort(request: web.Request) -> None:
        """Abort the TCP connection mid-body, after the kernel has taken what we wrote."""
        transport = request.transport
        if transport is not None:
            # abort() discards anything still buffered in the transport; let it drain first
            # so the client really receives the N chunks before the connection breaks.
            for _ in range(200):
                if transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.005)
            transport.abort()
        raise _DroppedByServer()
