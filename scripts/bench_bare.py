"""The floor the benchmark reports Circuit against: a bare relay built from Circuit's own parts.

uvicorn with uvloop and httptools in front (access log off), one pooled `aiohttp.ClientSession`
behind, and nothing in between: no auth, no parsing of the body, no accounting, no records, no
metrics, no log line; its garbage collector tuned as Circuit tunes its own. Every POST is sent
to the upstream with the client's body untouched; a JSON answer is read whole and sent back, a
stream is relayed per network read, as Circuit relays it. What Circuit costs over this is its
own work.

    python scripts/bench_bare.py --port 8081 --upstream http://127.0.0.1:9000

Where Circuit swaps one of these parts for a faster one, this relay must use the same part, so
the ratio stays honest.
"""

from __future__ import annotations

import argparse

import aiohttp
import uvicorn

from circuit.gateway.heap import settle_heap

_JSON = [(b"content-type", b"application/json")]


class BareRelay:
    """The ASGI app: POST path → upstream + path, the answer passed back as it comes."""

    def __init__(self, upstream: str, key: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["method"] == "POST":
                await self._relay(scope, receive, send)
            else:
                await send({"type": "http.response.start", "status": 200, "headers": _JSON})
                await send({"type": "http.response.body", "body": b'{"status":"ok"}'})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The pool Circuit's providers keep (providers/upstream_http.py).
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=1000, ttl_dns_cache=300,
                                                   keepalive_timeout=30),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                    headers=self.headers)
                # Circuit settles its heap once started (circuit/gateway/heap.py): so does the
                # floor, which gains from it too (−7 % of a JSON request's instructions at c=64).
                settle_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _relay(self, scope, receive, send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        async with self.session.post(self.upstream + scope["path"], data=body) as answer:
            content_type = answer.headers.get("Content-Type", "application/json")
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": [(b"content-type", content_type.encode())]})
            if content_type.startswith("text/event-stream"):
                while chunk := await answer.content.readany():
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                await send({"type": "http.response.body", "body": await answer.read()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's root URL")
    parser.add_argument("--key", default="sk-bench-upstream")
    args = parser.parse_args()
    uvicorn.run(BareRelay(args.upstream, args.key), host=args.host, port=args.port,
                loop="uvloop", http="httptools", access_log=False, log_level="warning",
                lifespan="on")


if __name__ == "__main__":
    main()
