"""The one way providers POST upstream: connection failures and error answers become typed
errors, the same for every wire format."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import aiohttp

from circuit.errors import (
    UpstreamError,
    UpstreamFailed,
    UpstreamNotStreaming,
    UpstreamTimeout,
    UpstreamUnreachable,
)

ErrorMapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError]


def open_session(headers: Mapping[str, str], connect_timeout: float,
                 max_connections: int) -> aiohttp.ClientSession:
    """A pooled session for one upstream. Only connecting is bounded here: the first-byte and
    idle timeouts are applied by the provider around each wait."""
    connector = aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300,
                                     keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=dict(headers),
                                 auto_decompress=True)


async def post(session: aiohttp.ClientSession | None, url: str, payload: bytes, provider: str,
               error_for: ErrorMapper, *, stream: bool = False) -> aiohttp.ClientResponse:
    """The upstream's 2xx response, headers read and body not yet; else a typed error
    (`error_for` maps the upstream's own error answers). With `stream`, an answer that is one
    JSON body rather than an event stream is refused (UpstreamNotStreaming)."""
    assert session is not None, "provider not started"
    try:
        response = await session.post(url, data=payload)
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnreachable(f"{provider} is unreachable: {exc.strerror or exc}") from None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        raise UpstreamUnreachable(f"{provider} closed the connection: {exc}") from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailed(f"{provider} request failed: {exc}") from None
    if response.status >= 300:
        try:
            body = await response.read()
        except aiohttp.ClientError:
            body = b""
        finally:
            response.release()
        raise error_for(response.status, body, response.headers)
    if stream and response.content_type == "application/json":
        response.close()
        raise UpstreamNotStreaming(f"{provider} answered a stream request with one JSON body; "
                                   "it does not stream (ask without \"stream\": true)")
    return response


async def post_for_body(session: aiohttp.ClientSession | None, url: str, payload: bytes,
                        provider: str, error_for: ErrorMapper, first_byte: float) -> bytes:
    """The whole body of a (non-streamed) answer, which must arrive within `first_byte`."""
    try:
        async with asyncio.timeout(first_byte):
            response = await post(session, url, payload, provider, error_for)
            try:
                return await response.read()
            finally:
                response.release()
    except TimeoutError:
        raise UpstreamTimeout(f"{provider} did not answer within {first_byte:g}s") from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailed(f"{provider} broke off its answer: {exc}") from None
