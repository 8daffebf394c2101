"""A load generator that is cheap enough not to be the bottleneck: raw asyncio Protocols on uvloop.

N keep-alive HTTP/1.1 connections, one request in flight on each, the same precomputed request
bytes every time. A response is parsed just enough to know where it ends (Content-Length or
chunked framing); per request it records the latency (request written → response complete) and
the time to first byte (request written → first byte of the body).

The run: connect, warm up for --warmup seconds (not measured), measure for --duration seconds,
then stop sending and wait for what is in flight. Every request written is counted in `sent`,
warm-up and drain included (the benchmark compares that with the gateway's records).

Progress lines on stdout, one JSON object each, so a caller can sample other processes exactly
over the measured window: {"event": "measure_start"}, {"event": "measure_end"}, then the result.

    python scripts/bench_load.py --url http://127.0.0.1:8080/v1/chat/completions -c 64 --stream

The same body (model, max_tokens, messages) is a valid Anthropic Messages request: with a URL
ending in /v1/messages it measures that door (a stream then ends at `message_stop`). With a URL
ending in /v1/responses the body is a Responses request (model, max_output_tokens, input) and
a stream ends at `response.completed`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import resource
import sys
from collections import Counter
from time import perf_counter
from urllib.parse import urlsplit

HEAD, LENGTH, CHUNKED = 0, 1, 2


def build_request(host: str, port: int, path: str, *, model: str, stream: bool,
                  key: str | None, max_tokens: int = 64, prompt_words: int = 0) -> bytes:
    content = "Say hello in one short sentence."
    if prompt_words:
        # A longer prompt of varied words (about one token each), for costs that grow with it.
        content = " ".join(f"word{i % 997}" for i in range(prompt_words)) + " " + content
    body: dict = {"model": model, "max_tokens": max_tokens,
                  "messages": [{"role": "user", "content": content}]}
    if path.endswith("/responses"):
        body = {"model": model, "max_output_tokens": max_tokens, "input": content}
    if stream:
        body["stream"] = True
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             "Accept: */*", f"Content-Length: {len(payload)}"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Load:
    """Shared state of one run; the connections update it from their callbacks."""

    def __init__(self, host: str, port: int, request: bytes, *, stream: bool,
                 max_requests: int | None) -> None:
        self.host, self.port, self.request = host, port, request
        self.stream = stream
        # The Messages door's stream has no [DONE]: it ends with its message_stop event.
        self.done_marker = b"message_stop" if b" /v1/messages " in request[:64] else \
            b"response.completed" if b"/responses " in request[:64] else b"[DONE]"
        self.max_requests = max_requests
        self.running = True
        self.measuring = False
        self.sent = 0
        self.completed = 0
        self.inflight = 0
        self.open_streams = 0
        self.peak_open = 0
        self.events = 0
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.errors: Counter[str] = Counter()
        self.errors_total = 0
        self.reconnects = 0
        self.idle = asyncio.Event()

    def may_send(self) -> bool:
        return self.running and (self.max_requests is None or self.sent < self.max_requests)

    def check_idle(self) -> None:
        if self.inflight == 0 and not self.may_send():
            self.idle.set()

    def error(self, kind: str) -> None:
        self.errors_total += 1
        if self.measuring:
            self.errors[kind] += 1

    async def connect(self) -> Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Conn(self), self.host, self.port)
        return conn

    def reconnect(self) -> None:
        async def again() -> None:
            for _ in range(50):
                try:
                    conn = await self.connect()
                except OSError:
                    self.error("connect")
                    await asyncio.sleep(0.1)
                    continue
                self.reconnects += 1
                if self.may_send():
                    conn.send()
                else:
                    conn.transport.close()
                return

        if self.may_send():
            asyncio.get_running_loop().create_task(again())


class Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self._reset()

    def _reset(self) -> None:
        self.mode = HEAD
        self.head = b""
        self.status = 0
        self.close_after = False
        self.remaining = 0
        self.skip = 0
        self.pending = b""
        self.final = False
        self.t0 = 0.0
        self.t_first = 0.0
        self.events = 0
        self.saw_done = False
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy:
            load = self.load
            self.busy = False
            load.inflight -= 1
            if self.t_first:
                load.open_streams -= 1
            load.error("connection_lost")
            load.reconnect()
            load.check_idle()

    def send(self) -> None:
        load = self.load
        load.sent += 1
        load.inflight += 1
        self.busy = True
        self.t0 = perf_counter()
        self.transport.write(load.request)

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        if not self.busy:
            return  # nothing asked: ignore stray bytes
        if self.mode == HEAD:
            buf = self.head + data if self.head else data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.head = buf
                return
            self.head = b""
            head = buf[:end].lower()
            self.status = int(buf[9:12])
            self.close_after = b"connection: close" in head
            data = buf[end + 4:]
            if b"transfer-encoding: chunked" in head:
                self.mode = CHUNKED
            else:
                self.mode = LENGTH
                at = head.find(b"content-length:")
                if at >= 0:
                    stop = head.find(b"\r\n", at)
                    self.remaining = int(head[at + 15:stop if stop > 0 else len(head)])
                if self.remaining == 0:
                    self._finish(now)
                    return
            if not data:
                return
        if not self.t_first:
            self.t_first = now
            load = self.load
            load.open_streams += 1
            if load.open_streams > load.peak_open:
                load.peak_open = load.open_streams
        if self.load.stream:
            self.events += data.count(b"data: ")
            if not self.saw_done:
                marker = self.load.done_marker
                self.saw_done = marker in data or marker in self.tail + data[:len(marker)]
                self.tail = data[-len(marker):]
        if self.mode == LENGTH:
            self.remaining -= len(data)
            if self.remaining <= 0:
                self._finish(now)
        elif self._chunks(data):
            self._finish(now)

    def _chunks(self, data: bytes) -> bool:
        """Walk the chunked framing; True once the terminating chunk has fully arrived."""
        if self.pending:
            data, self.pending = self.pending + data, b""
        pos, n = 0, len(data)
        while True:
            if self.skip:
                if n - pos < self.skip:
                    self.skip -= n - pos
                    return False
                pos += self.skip
                self.skip = 0
                if self.final:
                    return True
            if pos >= n:
                return False
            end = data.find(b"\r\n", pos)
            if end < 0:
                self.pending = data[pos:]
                return False
            size = int(data[pos:end].split(b";", 1)[0], 16)
            pos = end + 2
            if size == 0:
                self.final = True
                self.skip = 2  # the CRLF after the last chunk (no trailers)
            else:
                self.skip = size + 2

    def _finish(self, now: float) -> None:
        load = self.load
        self.busy = False
        load.inflight -= 1
        load.completed += 1
        if self.t_first:
            load.open_streams -= 1
        ok = self.status == 200 and (self.saw_done or not load.stream)
        if not ok:
            load.error(f"status_{self.status}" if self.status != 200 else "stream_without_done")
        elif load.measuring:
            load.latencies.append(now - self.t0)
            load.ttfbs.append((self.t_first or now) - self.t0)
            load.events += self.events
        close = self.close_after
        self._reset()
        if close:
            self.transport.close()
            load.reconnect()
        elif load.may_send():
            self.send()
        load.check_idle()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(url: str, *, concurrency: int, duration: float, warmup: float, stream: bool,
              key: str | None, model: str, max_requests: int | None = None,
              drain_timeout: float = 30.0, prompt_words: int = 0, progress=_emit) -> dict:
    """One load run; returns the result dict (also what the command line prints)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = build_request(host, port, parts.path or "/", model=model, stream=stream, key=key,
                            prompt_words=prompt_words)
    load = Load(host, port, request, stream=stream, max_requests=max_requests)
    conns = await asyncio.gather(*(load.connect() for _ in range(concurrency)))
    started = perf_counter()
    if not warmup:
        load.measuring = True
    for conn in conns:
        if load.may_send():
            conn.send()
    if warmup:
        await asyncio.sleep(warmup)
        load.measuring = True
    progress({"event": "measure_start"})
    window_start, cpu_start = perf_counter(), _cpu()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.idle.wait(), timeout=duration)
    load.measuring = False
    window = perf_counter() - window_start
    cpu_window = _cpu() - cpu_start
    progress({"event": "measure_end"})
    load.running = False
    load.check_idle()
    try:
        await asyncio.wait_for(load.idle.wait(), timeout=drain_timeout)
    except TimeoutError:
        load.errors_total += load.inflight
        load.errors["drain_timeout"] += load.inflight
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    await asyncio.sleep(0)
    lat = sorted(load.latencies)
    ttfb = sorted(load.ttfbs)
    ms = 1000.0

    def pcts(values: list[float]) -> dict:
        if not values:
            return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
        return {"p50": percentile(values, 50) * ms, "p90": percentile(values, 90) * ms,
                "p99": percentile(values, 99) * ms, "max": values[-1] * ms,
                "mean": sum(values) / len(values) * ms}

    measured = len(lat)
    return {
        "url": url, "concurrency": concurrency, "stream": stream,
        "warmup_s": warmup, "duration_s": round(window, 4),
        "requests": measured, "rps": measured / window if window > 0 else 0.0,
        "errors": sum(load.errors.values()), "error_kinds": dict(load.errors),
        "errors_total": load.errors_total,
        "sent_total": load.sent, "completed_total": load.completed,
        "reconnects": load.reconnects, "peak_open_streams": load.peak_open,
        "events_per_response": load.events / measured if measured else None,
        "latency_ms": pcts(lat), "ttfb_ms": pcts(ttfb),
        "cpu": {"window_s": round(cpu_window, 4),
                "pct": round(100 * cpu_window / window, 1) if window > 0 else None,
                "total_s": round(_cpu(), 4), "wall_s": round(perf_counter() - started, 4)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://host:port/v1/chat/completions")
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("-w", "--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--stream", action="store_true", help="ask for SSE streams")
    parser.add_argument("--key", help="sent as Authorization: Bearer KEY")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--max-requests", type=int, help="send no more than this many in all")
    parser.add_argument("--prompt-words", type=int, default=0,
                        help="prepend this many words to the prompt (default: a short one)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to wait for requests in flight at the end")
    args = parser.parse_args(argv)
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    gc.disable()  # short-lived, and no cycles worth collecting: keep pauses out of the numbers
    result = asyncio.run(run(args.url, concurrency=args.concurrency, duration=args.duration,
                             warmup=args.warmup, stream=args.stream, key=args.key,
                             model=args.model, max_requests=args.max_requests,
                             drain_timeout=args.drain_timeout,
                             prompt_words=args.prompt_words))
    result["loop"] = loop_name
    _emit({"event": "result", "result": result})


if __name__ == "__main__":
    main()
