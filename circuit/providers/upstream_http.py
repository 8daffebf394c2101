"""The one way providers POST upstream: connection failures and error answers become typed
errors, the same for every wire format."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Mapping

import aiohttp

from circuit.errors import (
    UpstreamError,
    UpstreamFailed,
    UpstreamNotStreaming,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from circuit.providers.deadline import Deadline

ErrorMapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError]
#: Bytes of an upstream's error answer read: its message is cut to 500 characters anyway.
ERROR_BODY_LIMIT = 64 * 1024


def open_session(headers: Mapping[str, str], connect_timeout: float,
                 max_connections: int) -> aiohttp.ClientSession:
    """A pooled session for one upstream. Only connecting is bounded here: the first-byte and
    idle timeouts are applied by the provider around each wait."""
    connector = aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300,
                                     keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=dict(headers),
                                 auto_decompress=True)


def broken_words(exc: BaseException) -> str:
    """How a connection to an upstream failed, in words. Never aiohttp's own text: it quotes
    the raw bytes of an answer it could not parse (headers that may echo the key) and names
    the upstream's URL."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the upstream closed the connection"
    if isinstance(exc, ConnectionResetError | aiohttp.ClientConnectionResetError):
        return "the connection was reset"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer's body was cut off"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "its answer was not valid HTTP"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # the OS's reason ("Connection refused"), nothing of the peer's
    return "the connection failed"


def client_error(provider: str, exc: aiohttp.ClientError) -> UpstreamError:
    """A connection failure as the typed error a client may see: the provider's name and what
    failed, in words (broken_words)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"{provider} is unreachable: {broken_words(exc)}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        return UpstreamUnreachable(f"{provider} closed the connection: {broken_words(exc)}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamFailed(f"{provider} sent an answer that is not valid HTTP",
                              code="bad_upstream_response")
    return UpstreamFailed(f"{provider} request failed: {broken_words(exc)}")


async def post(session: aiohttp.ClientSession | None, url: str, payload: bytes, provider: str,
               error_for: ErrorMapper, *, stream: bool = False,
               headers: Mapping[str, str] | None = None,
               method: str = "POST") -> aiohttp.ClientResponse:
    """The upstream's 2xx response, headers read and body not yet; else a typed error
    (`error_for` maps the upstream's own error answers). With `stream`, an answer that is one
    JSON body rather than an event stream is refused (UpstreamNotStreaming). `method`: what
    a passthrough door forwards (GET and DELETE without a body)."""
    assert session is not None, "provider not started"
    try:
        # A redirect is not followed: it would send the request (and, to the same host, the
        # key) wherever the upstream points; it is answered as the upstream's error instead.
        response = await session.request(method, url, data=payload or None, headers=headers,
                                         allow_redirects=False)
    except aiohttp.ClientError as exc:
        raise client_error(provider, exc) from None
    if response.status >= 300:
        body = b""
        try:
            body = await read_at_most(response, ERROR_BODY_LIMIT)
        except aiohttp.ClientError:
            pass
        finally:
            response.close()  # the rest of a long error answer is not worth reading
        raise error_for(response.status, body, response.headers)
    if stream and response.content_type == "application/json":
        response.close()
        raise UpstreamNotStreaming(f"{provider} answered a stream request with one JSON body; "
                                   "it does not stream (ask without \"stream\": true)")
    return response


async def _read_parts(response: aiohttp.ClientResponse, limit: int) -> tuple[list[bytes], int]:
    """The body as read, up to its end or just past `limit` bytes; and its size so far."""
    parts: list[bytes] = []
    size = 0
    while size <= limit and (part := await response.content.readany()):
        parts.append(part)
        size += len(part)
    return parts, size


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body's first `limit` bytes (the rest is left unread)."""
    parts, _ = await _read_parts(response, limit)
    return b"".join(parts)[:limit]


async def read_bounded(response: aiohttp.ClientResponse, limit: int, provider: str) -> bytes:
    """The whole body, or UpstreamResponseTooLarge as soon as it is known to pass `limit`
    (decoded bytes: a compressed answer is bounded by what it unpacks to)."""
    declared = response.content_length
    if declared is not None and declared > limit and not response.headers.get(
            "content-encoding"):
        response.close()
        raise _too_large(provider, limit)
    parts, size = await _read_parts(response, limit)
    if size > limit:
        response.close()
        parts.clear()  # dropped unjoined: no copy of a refused answer
        raise _too_large(provider, limit)
    return b"".join(parts)


def _too_large(provider: str, limit: int) -> UpstreamResponseTooLarge:
    _give_back_memory()
    return UpstreamResponseTooLarge(f"{provider} sent an answer of more than {limit} bytes")


def event_too_large(provider: str, limit: int | None) -> UpstreamResponseTooLarge:
    """The error for a stream event past its bound (the decoder's `too_large`)."""
    _give_back_memory()
    return UpstreamResponseTooLarge(f"{provider} sent a stream event of more than {limit} bytes")


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def _give_back_memory() -> None:
    """Return the megabytes a refused answer was read into to the system. glibc keeps freed
    heap memory for reuse, so without this the process stays as large as its largest refused
    answer made it (the read is in pieces of a few KiB, which it does not map apart). Rare
    (only past a bound) and a few milliseconds."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


async def post_for_body(session: aiohttp.ClientSession | None, url: str, payload: bytes,
                        provider: str, error_for: ErrorMapper, first_byte: float,
                        limit: int, headers: Mapping[str, str] | None = None,
                        method: str = "POST") -> bytes:
    """The whole body of a (non-streamed) answer, which must arrive within `first_byte` and be
    at most `limit` bytes."""
    try:
        with Deadline(first_byte):
            response = await post(session, url, payload, provider, error_for, headers=headers,
                                  method=method)
            try:
                return await read_bounded(response, limit, provider)
            finally:
                response.release()
    except TimeoutError:
        raise UpstreamTimeout(f"{provider} did not answer within {first_byte:g}s") from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailed(f"{provider} broke off its answer: {broken_words(exc)}") from None
