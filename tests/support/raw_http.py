"""HTTP/1.1 by hand over a socket: for what no client library does on purpose (pipelining, a
head's end split across writes, slow or partial requests)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import orjson

from tests.support.gateway_server import CLIENT_KEY

CHAT = "/v1/chat/completions"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


def chat_head(length: int | None, *, extra: bytes = b"", close: bool = False) -> bytes:
    """The head of a chat request: declared `length`, or chunked when None."""
    framing = b"Transfer-Encoding: chunked\r\n" if length is None \
        else b"Content-Length: %d\r\n" % length
    return (b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\n" + framing + extra
            + (b"Connection: close\r\n" if close else b"") + b"\r\n")


def chat_request(body: bytes, **head: object) -> bytes:
    return chat_head(len(body), **head) + body  # type: ignore[arg-type]


def chunked(body: bytes, size: int = 65536) -> bytes:
    """`body` in the chunked transfer coding, `size` bytes a chunk."""
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
             for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def connect(port: int, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Reader:
    """Reads answers off one connection, one after another (pipelined answers too)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buffer += chunk

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(marker)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def answer(self) -> Answer:
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            parts = []
            while size := int(self._until(b"\r\n").split(b";")[0], 16):
                parts.append(self._exactly(size + 2)[:-2])
            self._until(b"\r\n")
            body = b"".join(parts)
        else:
            body = self._exactly(int(headers.get("content-length", "0")))
        return Answer(int(lines[0].split()[1]), headers, body)

    def until_closed(self) -> bytes:
        """All the server still sends until it closes the connection; the socket's timeout
        bounds the wait (TimeoutError: the server kept it open)."""
        try:
            while chunk := self.sock.recv(1 << 16):
                self.buffer += chunk
        except ConnectionResetError:
            pass
        rest, self.buffer = self.buffer, b""
        return rest


def exchange(port: int, request: bytes, *, parts: int = 1) -> Answer:
    """Send `request` on a new connection (in `parts` writes) and read the answer."""
    with connect(port) as sock:
        step = -(-len(request) // parts)
        for i in range(0, len(request), step):
            sock.sendall(request[i:i + step])
        return Reader(sock).answer()
