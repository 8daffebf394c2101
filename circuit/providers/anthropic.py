"""Anthropic's Messages API behind the Provider protocol, over one pooled aiohttp session.

The gateway speaks OpenAI; this provider translates each call to `POST {base_url}/v1/messages`
and the answer back (`anthropic_translate`), so clients see `chat.completion` bodies and
`chat.completion.chunk` streams whatever the upstream. Anthropic always reports usage in a
stream, so every stream ends with OpenAI's usage-only chunk (the relay hides it from a client
that did not ask for it).

Errors, by Anthropic status: 401/403 → UpstreamFailed, not retryable, never quoting the
upstream; 400/404/413/422/429 → UpstreamRejected with OpenAI's type/code (429 keeps
Retry-After and is retryable); 529 overloaded and 5xx → retryable UpstreamFailed. An `error`
event before the stream's first chunk is raised from `open_stream` (so it can be retried);
after it, it is passed on as an OpenAI error payload, which the relay turns into an error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from circuit.errors import (
    InvalidRequest,
    UpstreamError,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamTimeout,
)
from circuit.providers.anthropic_stream import StreamTranslator, stream_error_body
from circuit.providers.anthropic_translate import completion_from_anthropic, to_anthropic
from circuit.providers.base import SizeLimits, Timeouts
from circuit.providers.upstream_errors import redirected, upstream_error_fields
from circuit.providers.upstream_http import (
    ERROR_BODY_LIMIT,
    client_error,
    open_session,
    post_for_body,
    read_at_most,
    read_bounded,
)
from circuit.providers.upstream_stream import UpstreamEventStream, open_event_stream
from circuit.resilience.retry import retry_after_passed
from circuit.wire import Call, Completion, EventStream, Passthrough, WireReader

ANTHROPIC_VERSION = "2023-06-01"

#: Statuses the client can act on: (OpenAI error type, code).
_REJECTED = {
    400: ("invalid_request_error", "invalid_request"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "invalid_request"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def error_from_anthropic(status: int, body: bytes, headers: Mapping[str, str],
                         provider: str, secret: str | None = None) -> UpstreamError:
    """The typed error for Anthropic's non-2xx answer
    (`{"type": "error", "error": {"type": ..., "message": ...}}`); `secret` is cut out."""
    kind, message = _describe(body, secret)
    if status in (401, 403):
        # The gateway's own credentials failed; the upstream's words may quote the key.
        error = UpstreamFailed(f"{provider} rejected the gateway's credentials ({status})",
                               code="upstream_auth_failed")
        error.retryable = False
        return error
    if status < 400:
        return redirected(provider, status)
    passed = retry_after_passed(headers.get("retry-after"))
    if status == 529 or kind == "overloaded_error":
        return UpstreamFailed(f"{provider} is overloaded ({status})",
                              code="upstream_overloaded", headers=passed)
    if status in _REJECTED:
        type_, code = _REJECTED[status]
        return UpstreamRejected(status, message or f"{provider} rejected the request ({status})",
                                type=type_, code=code,
                                headers=passed if status == 429 else None)
    return UpstreamFailed(f"{provider} failed with status {status}"
                          + (f": {message}" if message else ""),
                          code="upstream_server_error" if status >= 500 else "upstream_error",
                          headers=passed)


def _describe(body: bytes, secret: str | None) -> tuple[str | None, str | None]:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    fields = upstream_error_fields(error, secret)
    return fields["type"], fields["message"]


def _error_from_event(provider: str, error: dict[str, Any]) -> UpstreamError:
    """The typed error for an `error` event that came before anything reached the client
    (retryable, unless the upstream called the request itself invalid)."""
    body = stream_error_body(provider, error)
    if error.get("type") in ("invalid_request_error", "request_too_large"):
        return UpstreamRejected(400, str(error.get("message") or body["message"]),
                                type="invalid_request_error", code="invalid_request")
    return UpstreamFailed(body["message"], code=body["code"])


def _early_error(provider: str, transform: Any) -> UpstreamError | None:
    """An `error` event before anything reached the client, from a passthrough transform
    that keeps it as `error` (as the translator does), to raise so the call can be retried."""
    error = getattr(transform, "error", None)
    return _error_from_event(provider, error) if isinstance(error, dict) else None


class AnthropicProvider:
    """Provider for Anthropic's Messages API (`base_url` like https://api.anthropic.com)."""

    wire = "messages"

    reports_stream_usage = True
    speaks_responses = False
    #: Models asked for per page of `GET /v1/models` (Anthropic allows up to 1000).
    models_page_size = 1000

    def __init__(self, name: str, base_url: str, api_key: str | None,
                 timeouts: Timeouts | None = None, default_max_tokens: int = 4096,
                 max_connections: int = 1000, sizes: SizeLimits | None = None) -> None:
        self.name = name
        base = base_url.rstrip("/")
        if base.endswith("/v1"):  # accept either form of the base URL
            base = base[:-3]
        self._base = base
        self._url = base + "/v1/messages"
        self._models_url = base + "/v1/models"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "anthropic-version": ANTHROPIC_VERSION}
        self._api_key = api_key
        if api_key:
            self._headers["x-api-key"] = api_key
        self._timeouts = timeouts or Timeouts()
        self._sizes = sizes or SizeLimits()
        self._default_max_tokens = default_max_tokens
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = open_session(self._headers, self._timeouts.connect,
                                     self._max_connections)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _payload(self, call: Call) -> bytes:
        return orjson.dumps(to_anthropic(call.body, call.model, stream=call.stream,
                                         default_max_tokens=self._default_max_tokens))

    def takes(self, body: dict) -> None:
        """What `to_anthropic` refuses (`n` > 1, a JSON schema response format, …), refused
        before any call as the gateway's own 400, so a route's next target may take it."""
        try:
            to_anthropic(body, "-", stream=False, default_max_tokens=self._default_max_tokens)
        except UpstreamRejected as refused:
            raise InvalidRequest(refused.message, code=refused.code,
                                 param=refused.param) from None

    def _error_for(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return error_from_anthropic(status, body, headers, self.name, self._api_key)

    async def complete(self, call: Call) -> Completion:
        payload = self._payload(call)  # a request Anthropic cannot take fails before the call
        body = await post_for_body(self._session, self._url, payload, self.name,
                                   self._error_for, self._timeouts.first_byte,
                                   self._sizes.response)
        try:
            answer, usage, finish, text = completion_from_anthropic(orjson.loads(body),
                                                                    call.model)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise UpstreamFailed(f"{self.name} sent an unreadable answer",
                                 code="bad_upstream_response") from None
        return Completion(body=orjson.dumps(answer), usage=usage, finish_reason=finish,
                          text=text)

    async def open_stream(self, call: Call) -> UpstreamEventStream:
        payload = self._payload(call)
        options = call.body.get("stream_options")
        translator = StreamTranslator(
            self.name, call.model,
            usage_nulls=isinstance(options, dict) and options.get("include_usage") is True,
            secret=self._api_key)
        return await open_event_stream(
            self._session, self._url, payload, self.name, self._error_for, self._timeouts,
            translator, self._sizes.event,
            early_error=lambda: None if translator.error is None else _error_from_event(
                self.name, translator.error))

    async def forward(self, request: Passthrough, reader: WireReader) -> Completion | EventStream:
        """`request.path` is under the API's root (`/v1/messages`, …); the client's
        `anthropic-version` and `anthropic-beta` go upstream in place of the gateway's."""
        url = self._base + request.path
        if request.stream:
            transform = reader.transform(self._api_key)
            return await open_event_stream(
                self._session, url, request.body, self.name, self._error_for, self._timeouts,
                transform, self._sizes.event, headers=request.headers,
                early_error=lambda: _early_error(self.name, transform))
        body = await post_for_body(self._session, url, request.body, self.name,
                                   self._error_for, self._timeouts.first_byte,
                                   self._sizes.response, headers=request.headers)
        return reader.completion(body)

    async def list_models(self) -> list[str]:
        assert self._session is not None, "provider not started"
        models: list[str] = []
        params = {"limit": str(self.models_page_size)}
        try:
            async with asyncio.timeout(self._timeouts.first_byte):
                for _ in range(20):  # pages; far more models than Anthropic has
                    async with self._session.get(self._models_url, params=params,
                                                 allow_redirects=False) as response:
                        if response.status != 200:
                            raise error_from_anthropic(
                                response.status, await read_at_most(response, ERROR_BODY_LIMIT),
                                response.headers, self.name, self._api_key)
                        page = orjson.loads(await read_bounded(response, self._sizes.response,
                                                               self.name))
                    models.extend(m["id"] for m in page.get("data", [])
                                  if isinstance(m, dict) and "id" in m)
                    if not page.get("has_more") or not page.get("last_id"):
                        break
                    params = {**params, "after_id": str(page["last_id"])}
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name} did not list its models in time") from None
        except aiohttp.ClientError as exc:
            raise client_error(self.name, exc) from None
        except (orjson.JSONDecodeError, AttributeError):
            raise UpstreamFailed(f"{self.name} answered its model list unreadably") from None
        return models
