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

from circuit.errors import UpstreamError, UpstreamFailed, UpstreamTimeout
from circuit.providers.base import SizeLimits, Timeouts
from circuit.providers.openai_wire import OpenAIEvents, output_text, usage_from_openai, wants_usage
from circuit.providers.upstream_errors import error_from_upstream
from circuit.providers.upstream_http import (
    ERROR_BODY_LIMIT,
    client_error,
    open_session,
    post_for_body,
    read_at_most,
    read_bounded,
)
from circuit.providers.upstream_stream import UpstreamEventStream, open_event_stream
from circuit.wire import Call, Completion, EventStream, Passthrough, WireReader


class OpenAIProvider:
    """Provider for an OpenAI-compatible chat-completions upstream."""

    wire = "chat"

    reports_stream_usage = True

    def __init__(self, name: str, base_url: str, api_key: str | None,
                 timeouts: Timeouts | None = None, max_connections: int = 1000,
                 sizes: SizeLimits | None = None, responses: bool = True,
                 max_tokens_field: str = "max_completion_tokens") -> None:
        self.name = name
        #: False for a chat-completions-only upstream (vLLM, Ollama, …): `responses = false`.
        self.speaks_responses = responses
        #: What a translated request's `max_tokens` is sent as (`max_tokens_field`).
        self.max_tokens_field = max_tokens_field
        self._base = base_url.rstrip("/")
        self._url = self._base + "/chat/completions"
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

    def _payload(self, call: Call) -> bytes:
        # Forward the client's bytes untouched unless the gateway must change something.
        changes: dict[str, Any] = {}
        body = call.body
        if call.body.get("model") != call.model:
            changes["model"] = call.model
        if call.translated and self.max_tokens_field != "max_tokens" and "max_tokens" in body:
            # The gateway's own body: its output limit in this upstream's word for it.
            body = {name: value for name, value in body.items() if name != "max_tokens"}
            changes[self.max_tokens_field] = call.body["max_tokens"]
        if call.stream:
            options = call.body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                changes["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                             "include_usage": True}
        return orjson.dumps({**body, **changes}) if changes else call.raw

    def _error_for(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return error_from_upstream(status, body, headers, self.name, self._api_key)

    def takes(self, body: dict) -> None:
        """Every chat body goes upstream as it came."""

    async def complete(self, call: Call) -> Completion:
        body = await post_for_body(self._session, self._url, self._payload(call), self.name,
                                   self._error_for, self._timeouts.first_byte,
                                   self._sizes.response)
        try:
            parsed = orjson.loads(body)
            choices = parsed["choices"]
            finish = choices[0].get("finish_reason")
            text = "".join(output_text(choice.get("message") or {}) for choice in choices)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise UpstreamFailed(f"{self.name} sent an unreadable answer",
                                 code="bad_upstream_response") from None
        usage = usage_from_openai(parsed.get("usage"))
        return Completion(body=body, usage=usage, finish_reason=finish, text=text)

    async def open_stream(self, call: Call) -> UpstreamEventStream:
        return await open_event_stream(
            self._session, self._url, self._payload(call), self.name, self._error_for,
            self._timeouts, OpenAIEvents(wants_usage(call.body), self._api_key),
            self._sizes.event)

    async def forward(self, request: Passthrough, reader: WireReader) -> Completion | EventStream:
        """`request.path` is under the base URL (`/responses`, `/embeddings`, …), with the
        client's query string; `request.method` is forwarded (GET, DELETE: no body)."""
        url = self._base + request.path
        if request.stream:
            return await open_event_stream(self._session, url, request.body, self.name,
                                           self._error_for, self._timeouts,
                                           reader.transform(self._api_key),
                                           self._sizes.event, headers=request.headers)
        body = await post_for_body(self._session, url, request.body, self.name,
                                   self._error_for, self._timeouts.first_byte,
                                   self._sizes.response, headers=request.headers,
                                   method=request.method)
        return reader.completion(body)

    async def list_models(self) -> list[str]:
        assert self._session is not None, "provider not started"
        try:
            async with asyncio.timeout(self._timeouts.first_byte), \
                    self._session.get(self._models_url, allow_redirects=False) as response:
                if response.status != 200:
                    raise error_from_upstream(response.status, await read_at_most(
                        response, ERROR_BODY_LIMIT), response.headers, self.name, self._api_key)
                body = await read_bounded(response, self._sizes.response, self.name)
                data = orjson.loads(body).get("data", [])
                return [m["id"] for m in data if isinstance(m, dict) and "id" in m]
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name} did not list its models in time") from None
        except aiohttp.ClientError as exc:
            raise client_error(self.name, exc) from None
        except (orjson.JSONDecodeError, AttributeError):
            raise UpstreamFailed(f"{self.name} answered its model list unreadably") from None
