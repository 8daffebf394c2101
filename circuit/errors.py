"""Every error a client can see, one class each, in OpenAI's error shape.

    CircuitError                     status, type, code, message; `body()` is the wire shape
    ├── InvalidRequest               400  malformed JSON, missing or ill-typed fields
    │   └── MalformedHttp            400  bytes the HTTP parser cannot read (then closed)
    ├── AuthenticationFailed         401  missing, unknown or revoked key
    ├── ModelNotPriced               403  a key with a daily limit asked for a model with no price
    ├── EndpointNotBudgeted          403  a key with a daily limit asked for an endpoint whose
    │                                     cost Circuit cannot bound (images, audio, files, …)
    ├── NotFound                     404  unknown path
    ├── MethodNotAllowed             405  with `Allow`
    ├── RequestTimeout               408  head or body not received in time (then closed)
    ├── PayloadTooLarge              413  body over `max_body_bytes`
    ├── UnsupportedMediaType         415  a body that is not JSON
    ├── RequestHeadersTooLarge       431  request line and headers over 64 KiB, or too many
    ├── RateLimitExceeded            429  requests/tokens per minute, with Retry-After
    ├── QuotaExceeded                429  daily USD budget spent
    ├── ServiceUnavailable           503  no target can serve (breaker open); fixed body
    ├── StoreUnavailable             503  the database did not answer in time on the request path
    ├── LimitsUnavailable            503  shared rate limits unreachable, and the policy is fail-closed
    ├── TooManyConnections           503  every connection slot busy with a request (closed)
    └── UpstreamError                     a provider failed; `retryable` drives retry/breaker
        ├── UpstreamRejected         the upstream's own 400/404/409/422/429, passed through
        ├── UpstreamFailed           502  5xx, bad credentials upstream, unreadable answer
        ├── UpstreamUnreachable      502  connection refused or reset before an answer
        ├── UpstreamTimeout          504  no first byte, or a stream idle, past its timeout
        ├── UpstreamNotStreaming     502  a stream was asked for and the upstream answered JSON
        ├── UpstreamResponseTooLarge 502  an answer or one stream event over its size bound
        └── StreamBroken             the upstream stream ended mid-way (becomes an SSE error event)
            └── UpstreamOverrun      a stream passed the output the request reserved: cut there

`body()` is OpenAI's shape; each door's shape and status (Anthropic's on the Messages door) are
mapped in one place, `circuit.gateway.doors`, and answered by `circuit.gateway.responses`.
"""

from __future__ import annotations


class CircuitError(Exception):
    """Base of every client-visible error."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    #: The request field the error is about, when the upstream named one.
    param: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        """The error in OpenAI's shape."""
        error = {"message": self.message, "type": self.type, "code": self.code}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


class InvalidRequest(CircuitError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message, code=code)
        #: The field at fault, as OpenAI names it (`messages[0]`), for the SDK's `param`.
        self.param = param


class AuthenticationFailed(CircuitError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"

    def __init__(self, message: str, *, code: str | None = None,
                 key_name: str | None = None) -> None:
        super().__init__(message, code=code)
        #: The name of a known but revoked key, for the record (never sent to the client).
        self.key_name = key_name


class NotFound(CircuitError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotPriced(CircuitError):
    """A budgeted key must not spend without bound on a model name the client picks."""

    status = 403
    type = "permission_error"
    code = "model_not_priced"


class EndpointNotBudgeted(CircuitError):
    """A budgeted key must not spend on an endpoint whose cost no reservation can bound: the
    key may do it, the gateway cannot, so it is a permission the key lacks (403), not a
    malformed request (400)."""

    status = 403
    type = "permission_error"
    code = "endpoint_not_budgeted"


class MalformedHttp(InvalidRequest):
    """What the HTTP parser could not read; answered by the server, before any app sees it."""

    code = "invalid_http_request"


class MethodNotAllowed(CircuitError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(CircuitError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(CircuitError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(CircuitError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RequestHeadersTooLarge(CircuitError):
    status = 431
    type = "invalid_request_error"
    code = "request_header_fields_too_large"


class RateLimitExceeded(CircuitError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class QuotaExceeded(CircuitError):
    """Said in two parts, why and when the budget resets; a door puts its advice on how to
    reserve less between them (`advised`, from circuit.gateway.doors)."""

    status = 429
    type = "insufficient_quota"
    code = "quota_exceeded"

    def __init__(self, why: str, resets: str = "", *, advice: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(" ".join(part for part in (why, advice, resets) if part),
                         headers=headers)
        self.why, self.resets = why, resets

    def advised(self, advice: str | None) -> QuotaExceeded:
        """The same refusal, with `advice` (None: none)."""
        return QuotaExceeded(self.why, self.resets, advice=advice, headers=self.headers)


class ServiceUnavailable(CircuitError):
    """No target can serve. Its body is fixed by contract, so clients can match on it."""

    status = 503
    type = "service_unavailable"
    code = "service_unavailable"

    def __init__(self, retry_after: int = 1, cause: str | None = None) -> None:
        headers = {"retry-after": str(max(1, retry_after))}
        if cause:
            # The body is fixed; why the breakers opened (e.g. the gateway's own upstream key
            # was refused) travels beside it.
            headers["x-circuit-breaker-cause"] = cause
        super().__init__("Upstream provider temporarily unavailable", headers=headers)

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class StoreUnavailable(CircuitError):
    """The database did not answer in time while a request needed it (a budget lease)."""

    status = 503
    type = "service_unavailable"
    code = "store_unavailable"


class LimitsUnavailable(CircuitError):
    """Redis, where the fleet's rate limits live, cannot be reached, and the deployment chose
    to refuse rather than enforce them per replica (CIRCUIT_REDIS_FALLBACK=closed)."""

    status = 503
    type = "service_unavailable"
    code = "rate_limits_unavailable"


class GatewayStopping(CircuitError):
    """The server stopped past its grace period while the request waited on its upstream."""

    status = 503
    type = "server_error"
    code = "gateway_shutdown"

    def __init__(self) -> None:
        super().__init__("The gateway stopped before the upstream answered; retry the request",
                         headers={"retry-after": "1"})


class TooManyConnections(CircuitError):
    """Every connection the process may hold is busy with a request in flight."""

    status = 503
    type = "server_error"
    code = "too_many_connections"

    def __init__(self) -> None:
        super().__init__("The gateway is at its connection limit, every connection busy; "
                         "retry shortly", headers={"retry-after": "1"})


class UpstreamError(CircuitError):
    """A provider failed. `retryable` says whether a second try may succeed."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True
    #: Whether the provider's breaker should count this as a failure.
    breaker_failure = True


class UpstreamRejected(UpstreamError):
    """The upstream refused the request for a reason the client can act on."""

    retryable = False
    breaker_failure = False

    def __init__(self, status: int, message: str, *, type: str, code: str | None,
                 headers: dict[str, str] | None = None, param: str | None = None) -> None:
        super().__init__(message, code=code or "upstream_rejected", headers=headers)
        self.status = status
        self.type = type
        self.param = param
        if status == 429:
            # Rate limited upstream: another try (or another target) may well succeed.
            self.retryable = True
            self.breaker_failure = True


class UpstreamFailed(UpstreamError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class UpstreamNotStreaming(UpstreamError):
    """Asked for a stream, the upstream answered one JSON body: a mismatch of the upstream's,
    which a retry would repeat and which says nothing of its health."""

    status = 502
    type = "upstream_error"
    code = "upstream_not_streaming"
    retryable = False
    breaker_failure = False


class StreamBroken(UpstreamError):
    """The upstream stream failed after its first byte; never retried."""

    status = 502
    type = "upstream_error"
    code = "upstream_stream_broken"
    retryable = False


class UpstreamOverrun(StreamBroken):
    """The stream's output passed what the request reserved: the upstream ignored the
    request's output limit, and the gateway cut the stream there."""

    code = "upstream_overrun"


class UpstreamResponseTooLarge(UpstreamError):
    """An upstream answer, or one event of its stream, over the configured bound.

    Not retried: the same request would most likely bring the same answer (a large `n`, or
    logprobs), paid for again. Not a breaker failure: the request, not the provider's health,
    is the likely cause."""

    status = 502
    type = "upstream_error"
    code = "upstream_response_too_large"
    retryable = False
    breaker_failure = False
