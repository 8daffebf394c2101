"""uvicorn's httptools protocol with the limits a server facing the internet needs.

uvicorn bounds none of these; `circuit serve` runs this protocol instead:
- Heads: past 64 KiB of request line and headers (only those bytes: a body in the same read
  is not counted), or past 100 headers, the answer is 431 and the connection closes. The
  head's bytes are counted as they arrive, before the parser sees them. The header fields are
  counted as the parser reads them, with their bytes too (which bounds a head parsed in the
  same read as a chunked body before it), and a chunked body's trailer fields count with its
  head's; its framing and trailers may take 64 KiB plus 8 bytes per byte of body.
- Time: a head must be complete within `header_timeout` of the connection's opening (or of
  its first byte on a kept-alive connection), a body within `body_timeout` of its head, plus a
  second per 64 KiB received; an idle kept-alive connection closes after `keepalive_timeout`.
- Count: at most `max_connections` per worker; see `circuit.gateway.connections`.
- Refusals are in the error shape (JSON) of the door the request came to, as every other
  answer of the gateway, unreadable HTTP included; the connection is then half-closed and what
  the client still sends is dropped for a moment, so the client reads the answer instead of a
  reset. A refusal behind pipelined requests goes out after their answers, in order. A
  request whose body was too slow is told so through its HangUp, so it is recorded as the 408
  answered, not as a client that left.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from circuit.errors import (
    CircuitError,
    MalformedHttp,
    RequestHeadersTooLarge,
    RequestTimeout,
    TooManyConnections,
)
from circuit.gateway.connections import guard_for
from circuit.gateway.doors import CHAT, MESSAGES, Door
from circuit.gateway.hang_up import SCOPE_KEY as HANG_UP
from circuit.gateway.hang_up import HangUp
from circuit.gateway.request_id import assign_request_id, new_request_id
from circuit.gateway.responses import closing_error_bytes

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
#: A chunked body's framing (sizes, line ends) may be this many bytes per byte of body, and
#: its trailers, besides, MAX_HEAD_BYTES: one-byte chunks take five.
FRAMING_PER_BODY_BYTE = 8
#: A body may take one second more for every this many bytes it has delivered.
BODY_BYTES_PER_EXTRA_SECOND = 64 * 1024
#: Seconds a refused connection is kept half-closed for the client to read its answer.
LINGER_SECONDS = 2.0
_HEAD_END = b"\r\n\r\n"


class TooManyHeaders(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._guard = guard_for(app_state)
        self.timeout_keep_alive = self._guard.policy.keepalive_timeout
        # Where the parser is: in a head (bytes counted, with the last three kept so a head's
        # end split across reads is found), or in a body of `_body_left` bytes (None: chunked).
        self._in_head = True
        self._head_bytes = 0
        self._tail = b""
        # The head (and trailers) as the parser reads them: fields, and their bytes.
        self._fields = 0
        self._field_bytes = 0
        self._body_left: int | None = 0
        self._body_started = 0.0
        self._body_bytes = 0
        self._chunked_bytes = 0  # what a chunked body's reads brought, framing included
        self._messages_done = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refusing: CircuitError | None = None
        #: A refusal waiting for the answers of the requests pipelined before it.
        self._refusal: bytes | None = None
        self._closing = False
        #: Each request of this connection not yet answered, oldest first: its HangUp, and its
        #: cycle once its head is in.
        self._unanswered: list[list[Any]] = []

    # -- connections ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self._guard
        if len(self.connections) > guard.policy.max_connections and not guard.make_room():
            self._answer_and_close(TooManyConnections())
            return
        guard.waiting(self)
        self._arm(guard.policy.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._guard.busy(self)
        super().connection_lost(exc)
        # Every request of the connection not yet answered, the one in flight ahead of a
        # pipelined one too: uvicorn's own disconnect reaches only the newest, and a write of
        # an older one then raised on the closed transport instead of being dropped.
        unanswered, self._unanswered = self._unanswered, []
        for hang_up, cycle in unanswered:
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
            hang_up.fire()

    def evict(self) -> None:
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.close()

    # -- bytes in ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # a refused connection: what the client still sends is dropped
        start, end = 0, len(data)
        while start < end and not self._closing and not self.transport.is_closing():
            if self._in_head:
                stop = self._head_end(data, start)
                piece_end = end if stop < 0 else stop
                self._head_bytes += piece_end - start
                if self._head_bytes > MAX_HEAD_BYTES:
                    # Begun in this piece, the head is unparsed: what the parser holds is an
                    # earlier request's.
                    fresh = self._head_bytes == piece_end - start
                    self._answer_and_close(RequestHeadersTooLarge("Request headers are too large"),
                                           data[start:piece_end], parsed=not fresh)
                    return
                self._tail = (self._tail + data[max(start, end - 3):end])[-3:] if stop < 0 \
                    else b""
                self._feed(data, start, piece_end)
            elif self._body_left is not None:
                piece_end = min(end, start + self._body_left)
                self._body_left -= piece_end - start
                self._feed(data, start, piece_end)
            else:
                # A chunked body: its end is the parser's to find, so the rest of the read is
                # fed with it, and requests pipelined behind it in this read are parsed too
                # (their heads bounded as the parser reads them, in on_header). Where the last
                # of them stands is worked out from the parser's state: in a body of known
                # length, what is left of it; in a head, the count of its bytes starts at the
                # next read.
                piece_end = end
                done = self._messages_done
                self._chunked_bytes += piece_end - start
                self._feed(data, start, piece_end)
                if self._messages_done == done and self._body_left is None and \
                        self._chunked_bytes - self._body_bytes > \
                        MAX_HEAD_BYTES + FRAMING_PER_BODY_BYTE * self._body_bytes:
                    # Not body: chunk sizes, their extensions, trailer fields. A field the
                    # parser is still reading (one that never ends) is in no count of fields.
                    self._answer_and_close(RequestHeadersTooLarge(
                        "Request trailers or chunk framing are too large"))
                    return
                if self._messages_done != done:
                    if self._in_head:
                        self._head_bytes = 0
                        self._tail = data[-3:]
                    elif self._body_left is not None:
                        self._body_left -= self._body_bytes
            start = piece_end
        self._arm_for_state()

    def _feed(self, data: bytes, start: int, end: int) -> None:
        super().data_received(data if start == 0 and end == len(data)
                              else memoryview(data)[start:end])

    def _head_end(self, data: bytes, start: int) -> int:
        """Index in `data` just past the head's end, or -1 if it does not end in this read."""
        if self._tail and start == 0:
            joined = self._tail + data[:3]
            found = joined.find(_HEAD_END)
            if found >= 0:
                return found + 4 - len(self._tail)
        found = data.find(_HEAD_END, start)
        return -1 if found < 0 else found + 4

    # -- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fields = self._field_bytes = 0
        # The request learns of a hang-up without a task awaiting `receive` for it.
        hang_up = HangUp()
        self.scope[HANG_UP] = hang_up  # type: ignore[literal-required]
        self._unanswered.append([hang_up, None])

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._field_bytes += len(name) + len(value)
        if self._fields > MAX_HEADERS:
            self._refusing = RequestHeadersTooLarge(f"More than {MAX_HEADERS} request headers")
            raise TooManyHeaders  # the parser stops; send_400_response answers
        if self._field_bytes > MAX_HEAD_BYTES:
            self._refusing = RequestHeadersTooLarge("Request headers are too large")
            raise TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._field_bytes + len(self.url) > MAX_HEAD_BYTES:
            self._refusing = RequestHeadersTooLarge("Request headers are too large")
            raise TooManyHeaders
        self._in_head = False
        self._cancel_timer()
        self._guard.busy(self)
        length = 0
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"transfer-encoding":
                length = None
                break
        self._body_left = length
        self._body_bytes = self._chunked_bytes = 0
        self._body_started = self.loop.time()
        super().on_headers_complete()
        cycle = self.cycle
        if self._unanswered and cycle is not None and cycle.scope is self.scope:
            self._unanswered[-1][1] = cycle

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        self._messages_done += 1
        self._cancel_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._unanswered:
            del self._unanswered[0]  # answers go out in the order their requests came
        super().on_response_complete()
        if self._refusal is not None:
            if not self._answers_owed():
                answer, self._refusal = self._refusal, None
                self._refuse(answer)
            return
        if not self.transport.is_closing() and not self.pipeline and \
                self.cycle.response_complete:
            self._guard.waiting(self)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer is text/plain; the gateway's answers are all OpenAI-shaped JSON.
        self._answer_and_close(self._refusing or MalformedHttp(
            "The request is not valid HTTP/1.1 (the connection is closed)"))

    # -- timeouts ------------------------------------------------------------------------------

    def _arm_for_state(self) -> None:
        """After a read: time the part of a request that is still on its way, if any."""
        if self._timer is not None or self._closing or self.transport.is_closing():
            return
        policy = self._guard.policy
        if self._in_head:
            if self._head_bytes:
                self._arm(policy.header_timeout, self._head_timed_out)
        else:
            self._arm(policy.body_timeout, self._body_overdue)

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined head behind a request in flight: keep-alive bounds it later
        if self._head_bytes:
            self._answer_and_close(RequestTimeout(
                f"The request headers did not arrive within "
                f"{self._guard.policy.header_timeout:g}s"))
        else:
            self.transport.close()  # nothing asked: nothing to answer

    def _body_overdue(self) -> None:
        self._timer = None
        policy = self._guard.policy
        allowed = policy.body_timeout + self._body_bytes / BODY_BYTES_PER_EXTRA_SECOND
        left = self._body_started + allowed - self.loop.time()
        if left > 0:
            self._arm(left, self._body_overdue)  # the body kept coming: it earned more time
            return
        self._answer_and_close(RequestTimeout(
            f"The request body did not arrive within {allowed:.0f}s"))

    def _arm(self, delay: float, callback: Any) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- refusing ------------------------------------------------------------------------------

    def _door(self, unparsed: bytes = b"", parsed: bool = True) -> Door:
        """The door whose shape a refusal takes: Anthropic's for a path under /v1/messages or
        a request that sent `anthropic-version`, else OpenAI's. What the parser has read is
        asked first (unless nothing of the refused head was `parsed`), then the `unparsed`
        bytes of the head (a head refused for its size in the read that brought it)."""
        url = (getattr(self, "url", None) or b"") if parsed else b""
        if not url and unparsed:
            request_line = unparsed.partition(b"\r\n")[0].split(b" ")
            url = request_line[1] if len(request_line) > 1 else b""
        path = url.partition(b"?")[0]
        if path == b"/v1/messages" or path.startswith(b"/v1/messages/") or any(
                name.lower() == b"anthropic-version"
                for name, _ in (self.headers or () if parsed else ())) or \
                b"\nanthropic-version:" in unparsed.lower():
            return MESSAGES
        return CHAT

    def _answer_and_close(self, error: CircuitError, unparsed: bytes = b"",
                          parsed: bool = True) -> None:
        """Answer `error` and end the connection: half-close at once, close for good when the
        client hangs up or after LINGER_SECONDS (`unparsed`: see _door). A request refused
        behind pipelined ones still being answered waits for their answers: HTTP answers in
        the order requests came, and a half-closed connection could carry none of theirs."""
        self._closing = True
        self._cancel_timer()
        self._guard.busy(self)
        if self.transport.is_closing():
            return
        cycle = None if self._in_head else self.cycle
        request_id = None
        if cycle is not None:
            # Refused in its body (too slow, unreadable): the app, waiting on the body, sees
            # the client gone and writes nothing more, and records the request as the refusal
            # answered here, under the same id.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                # It is answered, or being answered (a 413 before the body, say): a second
                # answer would belong to no request.
                self.transport.close()
                return
            hang_up = cycle.scope.get(HANG_UP)
            if hang_up is not None:
                hang_up.answered = error
            request_id = assign_request_id(cycle.scope).decode("ascii")
        answer = closing_error_bytes(error, request_id or new_request_id(),
                                     self._door(unparsed, parsed))
        if self._answers_owed():
            self._refusal = answer  # written by on_response_complete, after the last of them
            return
        self._refuse(answer)

    def _answers_owed(self) -> bool:
        """Whether a request before the one being read (its head, or its body) is still
        unanswered."""
        own = None if self._in_head else self.cycle
        return any(cycle is not None and cycle is not own and not cycle.response_complete
                   for _, cycle in self._unanswered)

    def _refuse(self, answer: bytes) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(answer)
        try:
            transport.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            transport.close()
            return
        self._timer = self.loop.call_later(LINGER_SECONDS, transport.close)
        with contextlib.suppress(AttributeError):
            self.flow.resume_reading()  # keep reading (and dropping) until the client leaves
