"""A fast mock OpenAI upstream for the benchmark: raw asyncio Protocols on uvloop.

It must cost far less CPU per request than the gateway, so it does almost nothing per request:
responses are precomputed bytes, connections are kept alive, and the only parsing is finding the
end of the headers, the Content-Length and whether the body asks for a stream.

    POST .../chat/completions     a chat.completion (JSON), or with "stream": true an SSE stream of
                                  --chunks content events (plus a usage event when the request
                                  asks for `stream_options.include_usage`) and [DONE], chunked
    POST .../v1/messages          an Anthropic message (JSON), or with "stream": true its event
                                  stream (message_start, ping, one text delta per chunk,
                                  message_delta with usage, message_stop), chunked
    POST .../responses            an OpenAI Response (JSON), or with "stream": true its named
                                  event stream (response.created … one output_text.delta per
                                  chunk … response.completed with usage), chunked
    GET  .../models               a one-model list
    GET  /stats                   {"requests": served so far}

--latency-ms delays the start of every answer; --chunk-interval-ms spaces a stream's events
(used to hold many streams open). On start it prints one JSON line: {"port": N}.

    python scripts/bench_upstream.py --port 0 --chunks 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal

_STREAM = re.compile(rb'"stream"\s*:\s*true')
_USAGE = re.compile(rb'"include_usage"\s*:\s*true')
_MODEL = "gpt-4o-mini"
_CLAUDE = "claude-sonnet-4-5"
_CREATED = 1_700_000_000


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + content_type +
            b"\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\nConnection: keep-alive\r\n\r\n" + body)


def _chunk(payload: bytes, name: str | None = None) -> bytes:
    """One SSE event (named, as Anthropic's are, when `name` is given) as one HTTP/1.1 chunk."""
    event = b"data: " + payload + b"\n\n"
    if name is not None:
        event = b"event: " + name.encode() + b"\n" + event
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def _messages_answers(words: list[str]) -> tuple[bytes, list[bytes]]:
    """Anthropic's JSON message and its stream's pieces, for the Messages door's passthrough."""
    usage = {"input_tokens": 14, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0, "output_tokens": len(words)}
    message = {"id": "msg_bench", "type": "message", "role": "assistant", "model": _CLAUDE,
               "content": [{"type": "text", "text": "".join(words)}], "stop_reason": "end_turn",
               "stop_sequence": None, "usage": usage}
    events = [("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        *(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": w}}) for w in words),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": len(words)},
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None}}),
        ("message_stop", {"type": "message_stop"})]
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: keep-alive\r\n\r\n")
    pieces = [_chunk(_dumps(data), name) for name, data in events]
    return _response("200 OK", _dumps(message)), [head + pieces[0], *pieces[1:-1],
                                                  pieces[-1] + b"0\r\n\r\n"]


def _responses_answers(words: list[str]) -> tuple[bytes, list[bytes]]:
    """OpenAI's Response object and its stream's pieces, for the Responses door's passthrough."""
    text = "".join(words)
    usage = {"input_tokens": 14, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": len(words), "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 14 + len(words)}
    item = {"id": "msg_bench", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    response = {"id": "resp_bench", "object": "response", "created_at": _CREATED,
                "status": "completed", "model": _MODEL, "output": [item], "usage": usage}
    started = {**response, "status": "in_progress", "output": []}
    del started["usage"]
    part = {"type": "output_text", "text": "", "annotations": []}
    events = [("response.created", {"response": started}),
              ("response.in_progress", {"response": started}),
              ("response.output_item.added", {"output_index": 0, "item": {
                  **item, "status": "in_progress", "content": []}}),
              ("response.content_part.added", {"item_id": "msg_bench", "output_index": 0,
                                               "content_index": 0, "part": part}),
              *(("response.output_text.delta", {"item_id": "msg_bench", "output_index": 0,
                                                "content_index": 0, "delta": w})
                for w in words),
              ("response.output_text.done", {"item_id": "msg_bench", "output_index": 0,
                                             "content_index": 0, "text": text}),
              ("response.content_part.done", {"item_id": "msg_bench", "output_index": 0,
                                              "content_index": 0,
                                              "part": {**part, "text": text}}),
              ("response.output_item.done", {"output_index": 0, "item": item}),
              ("response.completed", {"response": response})]
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: keep-alive\r\n\r\n")
    pieces = [_chunk(_dumps({"type": name, "sequence_number": number, **data}), name)
              for number, (name, data) in enumerate(events)]
    return _response("200 OK", _dumps(response)), [head + pieces[0], *pieces[1:-1],
                                                   pieces[-1] + b"0\r\n\r\n"]


class Answers:
    """Every response the mock can give, as bytes, built once."""

    def __init__(self, chunks: int) -> None:
        words = [f"w{i} " for i in range(chunks)]
        usage = {"prompt_tokens": 14, "completion_tokens": chunks, "total_tokens": 14 + chunks,
                 "prompt_tokens_details": {"cached_tokens": 0}}
        completion = {
            "id": "chatcmpl-bench", "object": "chat.completion", "created": _CREATED,
            "model": _MODEL, "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "".join(words)}}],
            "usage": usage,
        }
        self.json = _response("200 OK", _dumps(completion))

        def event(delta: dict, finish: str | None = None) -> bytes:
            return _dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                           "created": _CREATED, "model": _MODEL,
                           "system_fingerprint": "fp_bench",
                           "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                        "finish_reason": finish}]})

        events = [event({"role": "assistant", "content": words[0] if words else ""})]
        events += [event({"content": w}) for w in words[1:]]
        events.append(event({}, "stop"))
        usage_event = _dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                              "created": _CREATED, "model": _MODEL, "choices": [],
                              "usage": usage})
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: keep-alive\r\n\r\n")
        tail = _chunk(b"[DONE]") + b"0\r\n\r\n"
        plain = [_chunk(e) for e in events]
        # Pieces of a stream, written together (no interval) or one by one.
        self.stream = [head + plain[0], *plain[1:-1], plain[-1] + tail]
        self.stream_usage = [head + plain[0], *plain[1:], _chunk(usage_event) + tail]
        self.stream_whole = b"".join(self.stream)
        self.stream_usage_whole = b"".join(self.stream_usage)
        self.messages_json, self.messages_stream = _messages_answers(words)
        self.messages_stream_whole = b"".join(self.messages_stream)
        self.responses_json, self.responses_stream = _responses_answers(words)
        self.responses_stream_whole = b"".join(self.responses_stream)
        self.models = _response("200 OK", _dumps({"object": "list", "data": [
            {"id": _MODEL, "object": "model", "created": _CREATED, "owned_by": "bench"}]}))
        self.not_found = _response("404 Not Found", b'{"error":{"message":"not found"}}')
        self.bad = _response("400 Bad Request", b'{"error":{"message":"bad request"}}')


class Upstream:
    def __init__(self, answers: Answers, latency: float, interval: float) -> None:
        self.answers = answers
        self.latency = latency
        self.interval = interval
        self.requests = 0


class MockProtocol(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order, one at a time."""

    __slots__ = ("up", "transport", "buf", "busy", "loop")

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        while not self.busy and self.transport is not None:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = buf[:end]
            low = head.lower()
            size = 0
            at = low.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = low.find(b"\r\n", at + 2)
                size = int(low[at + 17:stop if stop > 0 else len(low)])
            elif b"chunked" in low:
                self.transport.write(self.up.answers.bad)
                self.transport.close()
                return
            total = end + 4 + size
            if len(buf) < total:
                return
            body = buf[end + 4:total]
            self.buf = buf[total:]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        up, answers = self.up, self.up.answers
        line = head[:head.find(b"\r\n")] if b"\r\n" in head else head
        if line.startswith(b"POST ") and b"/v1/messages" in line:
            up.requests += 1
            if _STREAM.search(body):
                self._stream(answers.messages_stream, answers.messages_stream_whole)
            else:
                self._send_later(answers.messages_json)
        elif line.startswith(b"POST ") and b"/responses" in line:
            up.requests += 1
            if _STREAM.search(body):
                self._stream(answers.responses_stream, answers.responses_stream_whole)
            else:
                self._send_later(answers.responses_json)
        elif line.startswith(b"POST ") and b"/chat/completions" in line:
            up.requests += 1
            if _STREAM.search(body):
                usage = _USAGE.search(body) is not None
                self._stream(answers.stream_usage if usage else answers.stream,
                             answers.stream_usage_whole if usage else answers.stream_whole)
            else:
                self._send_later(answers.json)
        elif line.startswith(b"GET ") and b"/models" in line:
            self._send_later(answers.models)
        elif line.startswith(b"GET /stats"):
            self.transport.write(_response("200 OK", _dumps({"requests": up.requests})))
        else:
            self.transport.write(answers.not_found)

    def _send_later(self, data: bytes) -> None:
        if not self.up.latency:
            self.transport.write(data)
            return
        self.busy = True
        self.loop.call_later(self.up.latency, self._write_then_resume, data)

    def _write_then_resume(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
        self.busy = False
        if self.buf:
            self._serve()

    def _stream(self, pieces: list[bytes], whole: bytes) -> None:
        if not self.up.interval:
            self._send_later(whole)
            return
        self.busy = True
        self.loop.call_later(self.up.latency, self._piece, pieces, 0)

    def _piece(self, pieces: list[bytes], index: int) -> None:
        if self.transport is None or self.transport.is_closing():
            self.busy = False
            return
        self.transport.write(pieces[index])
        if index + 1 < len(pieces):
            self.loop.call_later(self.up.interval, self._piece, pieces, index + 1)
            return
        self.busy = False
        if self.buf:
            self._serve()


_PARENT = os.getppid()  # taken at start: the parent may be gone by the time we listen


async def serve(host: str, port: int, up: Upstream, ready=None) -> None:
    """Serve until cancelled or SIGTERM/SIGINT; `ready(port)` is called once listening."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: MockProtocol(up), host, port, backlog=4096,
                                      reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_parent() -> None:
        # Never outlive whoever started us (a killed test run must not leave a server behind).
        if os.getppid() != _PARENT:
            stop.set()
        else:
            loop.call_later(1.0, watch_parent)

    loop.call_later(1.0, watch_parent)
    try:
        await stop.wait()
    finally:
        server.close()


def install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--chunks", type=int, default=20, help="content events per stream")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay before every answer starts")
    parser.add_argument("--chunk-interval-ms", type=float, default=0.0,
                        help="delay between a stream's events (0: the whole stream at once)")
    args = parser.parse_args(argv)
    loop_name = install_uvloop()
    up = Upstream(Answers(max(1, args.chunks)), args.latency_ms / 1000,
                  args.chunk_interval_ms / 1000)

    def ready(port: int) -> None:
        print(json.dumps({"port": port, "loop": loop_name}), flush=True)

    asyncio.run(serve(args.host, args.port, up, ready))


if __name__ == "__main__":
    main()
