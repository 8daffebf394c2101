"""Turning an upstream's HTTP error into the gateway's typed errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from circuit.errors import UpstreamError, UpstreamFailed, UpstreamRejected
from circuit.resilience.retry import retry_after_passed

#: Upstream statuses whose meaning the client can act on, passed through as they are.
_PASSED_THROUGH = {400, 404, 409, 413, 422, 429}
#: What an error code or type may look like when passed on (it lands in headers and labels).
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: Longest upstream message passed on (cut only after redaction, so no key straddles the cut).
MESSAGE_LIMIT = 500


#: A run of this many characters of a key is enough to call a quote of it a leak.
WINDOW = 8


def redact(text: str, secret: str | None) -> str:
    """`text` without `secret`, nor any run of WINDOW or more of its characters (an upstream
    may quote a key's head or tail, `sk-proj-abc…wxyz1234`, or cut it anywhere). A run is cut
    whole: every place any window of the key is found is marked first, and each stretch of
    marks becomes one `[redacted]` (cutting window by window left the run's last characters)."""
    if not secret or not text:
        return text
    text = text.replace(secret, "[redacted]")
    if len(secret) < 2 * WINDOW:
        return text
    marked: list[tuple[int, int]] = []
    for start in range(len(secret) - WINDOW + 1):
        window = secret[start:start + WINDOW]
        at = text.find(window)
        while at >= 0:
            marked.append((at, at + WINDOW))
            at = text.find(window, at + 1)
    if not marked:
        return text
    marked.sort()
    pieces, kept_to, run_end = [], 0, -1
    for begin, end in marked:
        if begin > run_end:  # a new stretch: what lies before it is kept
            if run_end >= 0:
                pieces.append("[redacted]")
            pieces.append(text[kept_to:begin])
        run_end = max(run_end, end)
        kept_to = run_end
    pieces += ["[redacted]", text[kept_to:]]
    return "".join(pieces)


def quotes_secret(data: bytes, head: bytes, tail: bytes) -> bool:
    """Whether a stream event may quote the key: its first or last WINDOW characters are in
    it (two byte searches, so every event can be checked). `partition`, not `in`: on bytes,
    CPython 3.11's `in` first tries the needle as an int and raises and clears a TypeError,
    which costs it three times a search (callgrind: ~2,700 instructions against ~600)."""
    return bool(data.partition(head)[1] or data.partition(tail)[1])


def upstream_error_fields(error: Any, secret: str | None) -> dict[str, str | None]:
    """The message, type, code and param of an upstream's error object, each redacted of
    `secret` first and only then cut to size; a code or type that is not a plain word is
    dropped (it reaches headers, metrics labels and the record)."""
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        return {"message": None, "type": None, "code": None, "param": None}
    fields: dict[str, str | None] = {}
    for name in ("message", "type", "code", "param"):
        value = error.get(name)
        text = redact(str(value), secret) if value is not None and value != "" else None
        if text is not None and name in ("type", "code") and not _CODE.fullmatch(text):
            text = None
        fields[name] = text[:MESSAGE_LIMIT] if text is not None else None
    return fields


def safe_error_event(data: bytes, event: Any, secret: str | None) -> bytes:
    """An upstream's stream error event (`data`, parsed as `event`) fit to relay: as it came,
    unless its decoded text quotes some of `secret` — a JSON escape (`\\u0073k-…`) hides a
    quote from a search of the bytes as sent — then re-encoded from that text, redacted.
    Error events are rare: this reads every string of one, not only the key's two ends."""
    if not secret:
        return data
    text = orjson.dumps(event).decode()
    clean = redact(text, secret)
    return data if clean == text else clean.encode()


def error_from_upstream(status: int, body: bytes, headers: Mapping[str, str],
                        provider: str, secret: str | None = None) -> UpstreamError:
    """The typed error for an upstream's non-2xx answer; `secret` (the provider's key) is
    cut out of every field of what the upstream said, which reaches the client and the record."""
    fields = _describe(body, secret)
    message, type_, code = fields["message"], fields["type"], fields["code"]
    if status in (401, 403):
        # The gateway's own provider credentials failed; the upstream's words may quote the key.
        error = UpstreamFailed(f"{provider} rejected the gateway's credentials ({status})",
                               code="upstream_auth_failed")
        error.retryable = False
        return error
    if status < 400:
        return redirected(provider, status)
    # Waited by before a retry, and passed on: a 5xx's too (a 503's says when to come back).
    passed = retry_after_passed(headers.get("retry-after"))
    if status in _PASSED_THROUGH:
        return UpstreamRejected(
            status, message or f"{provider} rejected the request ({status})",
            type=type_ or ("rate_limit_error" if status == 429 else "invalid_request_error"),
            code=code, headers=passed if status == 429 else None, param=fields["param"])
    return UpstreamFailed(f"{provider} failed with status {status}"
                          + (f": {message}" if message else ""),
                          code="upstream_server_error" if status >= 500 else "upstream_error",
                          headers=passed if status >= 500 else None)


def redirected(provider: str, status: int) -> UpstreamError:
    """An upstream's redirect (never followed, see upstream_http.post): its configuration is
    wrong, and asking again gets the same answer, so it is not retried."""
    error = UpstreamFailed(f"{provider} answered with a redirect ({status}), which the gateway "
                           "does not follow; check its base_url")
    error.retryable = False
    return error


def _describe(body: bytes, secret: str | None) -> dict[str, str | None]:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    return upstream_error_fields(error, secret)
