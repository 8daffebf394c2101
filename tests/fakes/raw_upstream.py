"""An upstream that answers every request with the same raw bytes, whatever HTTP they make:
headers too long to parse, a header line that is not one, a body shorter than its length, a
redirect. The answers the gateway's HTTP client rejects before any provider code reads them."""

from __future__ import annotations

import socket
import socketserver
import threading


class RawUpstream:
    """`answer` written to each connection once its request is in; then the connection closes.
    `requests` counts the requests it got."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    body += piece
                upstream.requests += 1
                conn.sendall(upstream.answer)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RawUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
