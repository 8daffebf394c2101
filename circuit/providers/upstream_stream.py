"""UpstreamEventStream: one upstream SSE stream, whatever its wire format.

The OpenAI and Anthropic providers open their streams the same way and differ only in how an
event's `data` becomes StreamEvents (a `Transform`). What they share lives here once: the
prefetch of the first event (so a failure before it can still be retried), the idle timeout
after it, the bound on one event's size, the mapping of connection failures to typed errors,
and closing the connection — which cancels the upstream call — on cancellation, on an error
event and on an early end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aiohttp

from circuit.errors import StreamBroken, UpstreamError, UpstreamFailed, UpstreamTimeout
from circuit.providers.base import Timeouts
from circuit.providers.deadline import Deadline
from circuit.providers.sse import SSEDecoder
from circuit.providers.upstream_http import ErrorMapper, broken_words, event_too_large, post
from circuit.wire import StreamEvent, Transform


class UpstreamEventStream:
    """Yields the StreamEvents of each network read of an upstream's SSE response."""

    def __init__(self, provider: str, response: aiohttp.ClientResponse, idle: float,
                 transform: Transform, max_event_bytes: int | None = None) -> None:
        self._provider = provider
        self._response = response
        self._idle = idle
        self._idle_deadline = Deadline(idle)
        self._transform = transform
        self._decoder = SSEDecoder(max_event_bytes)
        self._max_event_bytes = max_event_bytes
        self._first: list[StreamEvent] | None = None
        self._done = False
        self._failure: UpstreamError | None = None  # raised once the events before it are out

    async def prefetch(self) -> list[StreamEvent]:
        """Read until the first events are in (or the stream ended), and return them. Only the
        caller's first-byte timeout bounds this wait: the idle timeout starts after it."""
        while not self._first and not self._done:
            self._first = await self._read(None)
        return self._first or []

    def __aiter__(self) -> UpstreamEventStream:
        return self

    async def __anext__(self) -> list[StreamEvent]:
        if self._first:
            first, self._first = self._first, None
            return first
        while not self._done:
            events = await self._read(self._idle)
            if events:
                return events
        raise StopAsyncIteration

    async def _read(self, idle: float | None) -> list[StreamEvent]:
        if self._failure is not None:
            self._done = True
            raise self._failure
        try:
            if idle is None:
                chunk = await self._response.content.readany()
            else:
                with self._idle_deadline:
                    chunk = await self._response.content.readany()
        except TimeoutError:
            self._close()
            raise UpstreamTimeout(f"{self._provider} went silent for {self._idle:g}s "
                                  "mid-stream", code="upstream_idle_timeout") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            self._close()
            raise StreamBroken(f"{self._provider} stream broke: {broken_words(exc)}") from None
        if not chunk:
            self._close()
            # A clean end without the stream's end marker: the upstream gave up mid-answer.
            raise StreamBroken(f"{self._provider} ended the stream early")
        events: list[StreamEvent] = []
        transform = self._transform
        try:
            transform.feed_read(self._decoder.feed(chunk), events)
            if transform.done:
                self._done = True
                self._response.release()
            elif transform.failed:
                self._close()
        except StreamBroken as exc:
            self._close()
            if not events:
                raise
            # The events before the unreadable one are relayed (and counted) first.
            self._failure, self._done = exc, False
            return events
        if self._decoder.too_large and not self._done:
            self._close()
            self._failure = event_too_large(self._provider, self._max_event_bytes)
            self._done = False  # the failure is raised at the next read
            if not events:
                return await self._read(idle)
        return events

    def _close(self) -> None:
        self._done = True
        # Closing (not releasing) drops the connection, which cancels the upstream call.
        self._response.close()

    async def aclose(self) -> None:
        if not self._done:
            self._close()


async def open_event_stream(session: aiohttp.ClientSession | None, url: str, payload: bytes,
                            provider: str, error_for: ErrorMapper, timeouts: Timeouts,
                            transform: Transform, max_event_bytes: int | None, *,
                            headers: Mapping[str, str] | None = None,
                            early_error: Callable[[], UpstreamError | None] | None = None
                            ) -> UpstreamEventStream:
    """POST a stream request and wait for its first events, within the first-byte timeout,
    so a failure before anything reached the client can still be retried. `early_error` is
    asked, once the first events are in, whether they were an error to raise instead."""
    response = None
    try:
        with Deadline(timeouts.first_byte):
            response = await post(session, url, payload, provider, error_for, stream=True,
                                  headers=headers)
            stream = UpstreamEventStream(provider, response, timeouts.idle, transform,
                                         max_event_bytes)
            await stream.prefetch()
    except TimeoutError:
        if response is not None:
            response.close()
        raise UpstreamTimeout(f"{provider} sent no first event within "
                              f"{timeouts.first_byte:g}s") from None
    except StreamBroken as exc:
        raise UpstreamFailed(str(exc), code=exc.code) from None
    except BaseException:
        if response is not None:
            response.close()
        raise
    error = early_error() if early_error is not None else None
    if error is not None:
        # Nothing has reached the client yet: fail the call instead, so it can be retried.
        await stream.aclose()
        raise error
    return stream
