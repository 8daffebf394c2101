"""Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, …) over one pooled aiohttp session.

aiohttp rather than httpx on this path: at concurrency 64 it costs ~0.09 ms of CPU per proxied
request against httpx's ~1.8 ms (docs/design.md; encode/httpx#3215).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from circuit.accounting.usage import Usage
from circuit.errors import StreamBroken, UpstreamError, UpstreamFailed, UpstreamTimeout
from circuit.providers.base import ChatCall, Completion, SizeLimits, Timeouts
from circuit.providers.sse import SSEDecoder
from circuit.providers.upstream_errors import (
    WINDOW,
    error_from_upstream,
    quotes_secret,
    redact,
)
from circuit.providers.upstream_http import (
    ERROR_BODY_LIMIT,
    event_too_large,
    open_session,
    post,
    post_for_body,
    read_at_most,
    read_bounded,
)

_DONE = b"[DONE]"


def usage_from_openai(usage: Any) -> Usage | None:
    """Usage from an OpenAI `usage` object, or None when it is absent or malformed."""
    if not isinstance(usage, dict):
        return None
    try:
        details = usage.get("prompt_tokens_details") or {}
        output_details = usage.get("completion_tokens_details") or {}
        counts = (usage.get("prompt_tokens"), usage.get("completion_tokens"),
                  details.get("cached_tokens"), details.get("cache_write_tokens"),
                  output_details.get("reasoning_tokens"))
        if not all(_plausible(c) for c in counts):
            return None  # counted locally instead: a wild count must not skew the ledger
        # cache_write_tokens: what the Anthropic provider reports in OpenAI's shape (as
        # OpenRouter names it), so streamed cache writes are priced as cache writes.
        return Usage(input_tokens=int(usage.get("prompt_tokens") or 0),
                     output_tokens=int(usage.get("completion_tokens") or 0),
                     cached_input_tokens=int(details.get("cached_tokens") or 0),
                     cache_write_tokens=int(details.get("cache_write_tokens") or 0),
                     reasoning_tokens=int(output_details.get("reasoning_tokens") or 0))
    except (TypeError, ValueError, AttributeError):
        return None


#: No single request uses more tokens than this; a larger count is an upstream's mistake.
_MAX_TOKENS = 100_000_000


def _plausible(count: Any) -> bool:
    return count is None or (isinstance(count, int) and not isinstance(count, bool)
                             and 0 <= count <= _MAX_TOKENS)


def _output_text(message: dict) -> str:
    """Everything of one choice's message that its output tokens paid for: the text, a
    refusal, and the name and arguments of each tool call."""
    parts = [message.get("content"), message.get("refusal")]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts += [function.get("name"), function.get("arguments")]
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        parts += [legacy.get("name"), legacy.get("arguments")]
    return "".join(part for part in parts if isinstance(part, str))


class OpenAIProvider:
    """Provider for an OpenAI-compatible chat-completions upstream."""

    reports_stream_usage = True

    def __init__(self, name: str, base_url: str, api_key: str | None,
                 timeouts: Timeouts | None = None, max_connections: int = 1000,
                 sizes: SizeLimits | None = None) -> None:
        self.name = name
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._models_url = base_url.rstrip("/") + "/models"
        self._api_key = api_key
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeouts = timeouts or Timeouts()
        self._sizes = sizes or SizeLimits()
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = open_session(self._headers, self._timeouts.connect,
                                     self._max_connections)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _payload(self, call: ChatCall) -> bytes:
        # Forward the client's bytes untouched unless the gateway must change something.
        changes: dict[str, Any] = {}
        if call.body.get("model") != call.model:
            changes["model"] = call.model
        if call.stream:
            options = call.body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                changes["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                             "include_usage": True}
        return orjson.dumps({**call.body, **changes}) if changes else call.raw

    def _error_for(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return error_from_upstream(status, body, headers, self.name, self._api_key)

    async def _post(self, call: ChatCall) -> aiohttp.ClientResponse:
        return await post(self._session, self._url, self._payload(call), self.name,
                          self._error_for, stream=True)

    async def complete(self, call: ChatCall) -> Completion:
        body = await post_for_body(self._session, self._url, self._payload(call), self.name,
                                   self._error_for, self._timeouts.first_byte,
                                   self._sizes.response)
        try:
            parsed = orjson.loads(body)
            choices = parsed["choices"]
            finish = choices[0].get("finish_reason")
            text = "".join(_output_text(choice.get("message") or {}) for choice in choices)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise UpstreamFailed(f"{self.name} sent an unreadable answer",
                                 code="bad_upstream_response") from None
        usage = usage_from_openai(parsed.get("usage"))
        return Completion(body=body, usage=usage, finish_reason=finish, text=text)

    async def open_stream(self, call: ChatCall) -> OpenAIChunkStream:
        response = None
        try:
            async with asyncio.timeout(self._timeouts.first_byte):
                response = await self._post(call)
                stream = OpenAIChunkStream(self.name, response, self._timeouts.idle,
                                           self._api_key, self._sizes.event)
                # Wait for the first event here, so a failure before it can still be retried.
                await stream.prefetch()
                return stream
        except TimeoutError:
            if response is not None:
                response.close()
            raise UpstreamTimeout(f"{self.name} sent no first event within "
                                  f"{self._timeouts.first_byte:g}s") from None
        except StreamBroken as exc:
            raise UpstreamFailed(str(exc), code="upstream_stream_broken") from None

    async def list_models(self) -> list[str]:
        assert self._session is not None, "provider not started"
        try:
            async with asyncio.timeout(self._timeouts.first_byte), \
                    self._session.get(self._models_url) as response:
                if response.status != 200:
                    raise error_from_upstream(response.status, await read_at_most(
                        response, ERROR_BODY_LIMIT), response.headers, self.name, self._api_key)
                body = await read_bounded(response, self._sizes.response, self.name)
                data = orjson.loads(body).get("data", [])
                return [m["id"] for m in data if isinstance(m, dict) and "id" in m]
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name} did not list its models in time") from None
        except (aiohttp.ClientError, orjson.JSONDecodeError, AttributeError) as exc:
            raise UpstreamFailed(f"{self.name} could not list models: {exc}") from None


class OpenAIChunkStream:
    """An upstream SSE stream, yielding the `data:` payloads of each network read."""

    def __init__(self, provider: str, response: aiohttp.ClientResponse, idle: float,
                 secret: str | None = None, max_event_bytes: int | None = None) -> None:
        self._provider = provider
        # An upstream's mid-stream error may quote the key; events carrying its head or tail
        # are redacted whole.
        self._secret = secret if secret and len(secret) >= 2 * WINDOW else None
        self._secret_ends = (secret[:WINDOW].encode(), secret[-WINDOW:].encode()) \
            if self._secret else None
        self._response = response
        self._idle = idle
        self._decoder = SSEDecoder(max_event_bytes)
        self._max_event_bytes = max_event_bytes
        self._first: list[bytes] | None = None
        self._done = False
        self._failure: UpstreamError | None = None  # raised once the events before it are out

    async def prefetch(self) -> None:
        """Read until the first event has arrived (or the stream ended). Only the caller's
        first-byte timeout bounds this wait: the idle timeout starts after the first event."""
        while not self._first and not self._done:
            self._first = await self._read(idle=None)

    def __aiter__(self) -> OpenAIChunkStream:
        return self

    async def __anext__(self) -> list[bytes]:
        if self._first:
            first, self._first = self._first, None
            return first
        while not self._done:
            payloads = await self._read()
            if payloads:
                return payloads
        raise StopAsyncIteration

    async def _read(self, idle: float | None | bool = True) -> list[bytes]:
        if self._failure is not None:
            self._done = True
            raise self._failure
        try:
            async with asyncio.timeout(self._idle if idle is True else idle):
                chunk = await self._response.content.readany()
        except TimeoutError:
            self._response.close()
            raise UpstreamTimeout(f"{self._provider} went silent for {self._idle:g}s "
                                  "mid-stream", code="upstream_idle_timeout") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            self._response.close()
            raise StreamBroken(f"{self._provider} stream broke: {exc.__class__.__name__}") \
                from None
        if not chunk:
            self._done = True
            self._response.release()
            # A clean end without [DONE] means the upstream gave up mid-answer.
            raise StreamBroken(f"{self._provider} ended the stream early")
        payloads = []
        for event in self._decoder.feed(chunk):
            if event.data == _DONE:
                self._done = True
                self._response.release()
                break
            data = event.data
            if self._secret_ends is not None and quotes_secret(data, *self._secret_ends):
                data = redact(data.decode("utf-8", "replace"), self._secret).encode()
            payloads.append(data)
        if self._decoder.too_large and not self._done:
            self._response.close()
            self._failure = event_too_large(self._provider, self._max_event_bytes)
            if not payloads:
                return await self._read()
        return payloads

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            # Closing (not releasing) drops the connection, which cancels the upstream call.
            self._response.close()
