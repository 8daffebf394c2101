"""Turning an upstream's HTTP error into the gateway's typed errors."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from circuit.errors import UpstreamError, UpstreamFailed, UpstreamRejected

#: Upstream statuses whose meaning the client can act on, passed through as they are.
_PASSED_THROUGH = {400, 404, 409, 413, 422, 429}


def redact(text: str, secret: str | None) -> str:
    """`text` without `secret`, nor the tail of it an upstream may quote (`...abcd1234`)."""
    if not secret or not text:
        return text
    text = text.replace(secret, "[redacted]")
    tail = secret[-8:]
    return text.replace(tail, "[redacted]") if len(secret) >= 16 else text


def error_from_upstream(status: int, body: bytes, headers: Mapping[str, str],
                        provider: str, secret: str | None = None) -> UpstreamError:
    """The typed error for an upstream's non-2xx answer; `secret` (the provider's key) is
    cut out of whatever the upstream said, which reaches the client and the record."""
    message, type_, code = _describe(body)
    message = redact(message, secret) if message else message
    if status in (401, 403):
        # The gateway's own provider credentials failed; the upstream's words may quote the key.
        error = UpstreamFailed(f"{provider} rejected the gateway's credentials ({status})",
                               code="upstream_auth_failed")
        error.retryable = False
        return error
    if status in _PASSED_THROUGH:
        passed = {}
        if status == 429 and headers.get("retry-after"):
            passed["retry-after"] = headers["retry-after"]
        return UpstreamRejected(
            status, message or f"{provider} rejected the request ({status})",
            type=type_ or ("rate_limit_error" if status == 429 else "invalid_request_error"),
            code=code, headers=passed)
    return UpstreamFailed(f"{provider} failed with status {status}"
                          + (f": {message}" if message else ""),
                          code="upstream_server_error" if status >= 500 else "upstream_error")


def _describe(body: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None, None, None
    if isinstance(error, str):
        return error[:500], None, None
    if not isinstance(error, dict):
        return None, None, None
    message = error.get("message")
    type_, code = error.get("type"), error.get("code")
    return (str(message)[:500] if message else None,
            str(type_) if type_ else None,
            str(code) if code else None)
