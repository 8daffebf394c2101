"""uvicorn's httptools protocol with limits on request headers, which it has none of.

Without them a client can make the gateway buffer megabytes of headers per connection. Past
64 KiB of request line and headers the answer is 431 and the connection closes; past 100
headers the parser stops and uvicorn answers 400. `circuit serve` runs this protocol.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100

_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s")
_431_BODY = (b'{"error": {"message": "Request headers are too large", '
             b'"type": "invalid_request_error", "code": "request_header_fields_too_large"}}')


class TooManyHeaders(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    _in_head = True
    _head_bytes = 0
    _header_count = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # While the head is incomplete every byte so far belongs to it.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.transport.write(_431 % (len(_431_BODY), _431_BODY))
                self.transport.close()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._header_count = True, 0, 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            raise TooManyHeaders  # the parser stops; uvicorn answers 400 and closes
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
