"""No pattern of clients takes the gateway down: idle, slow and surplus connections are closed
or refused within bounds, and normal requests keep being answered.

Timeouts are counted, not timed tightly: a connection must be closed by the server within ten
times its timeout. The connection limit is tested by counting which connections the server
closed, and, in a `circuit serve` process under a 1,024 open-file limit, by normal requests all
succeeding while more idle and slow connections are open than the limit allows.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_upstream import Behaviour
from tests.reliability.support import GatewayProcess, chat_body
from tests.support.gateway_server import CLIENT_KEY, GatewayServer
from tests.support.raw_http import CHAT, Reader, chat_head, chat_request, chunked, connect

TIMEOUT = 0.3  # seconds: the header, body and keep-alive timeouts of the gateway below
WITHIN = 10 * TIMEOUT
HELLO = orjson.dumps(chat_body(max_tokens=5))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("timeouts-gw"), PROVIDER="mock",
                           CIRCUIT_HEADER_TIMEOUT=TIMEOUT, CIRCUIT_BODY_TIMEOUT=TIMEOUT,
                           CIRCUIT_KEEPALIVE_TIMEOUT=TIMEOUT).start()
    yield server
    server.stop()


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    """Whether the server has closed `sock` (recv returns b"" or a reset) within `wait`."""
    sock.settimeout(wait)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


# -- timeouts ----------------------------------------------------------------------------------

def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(gateway):
    with connect(gateway.port, timeout=WITHIN) as sock:
        assert Reader(sock).until_closed() == b"", "closed without an answer: nothing was asked"


def test_a_head_sent_a_line_at_a_time_gets_408_and_is_closed(gateway):
    received = b""
    with connect(gateway.port) as sock:
        sock.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: gw\r\n")
        sock.settimeout(0.1)
        deadline = time.monotonic() + WITHIN
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                sock.sendall(b"X-Slow: 1\r\n")  # a slowloris: always one more header
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
        else:
            pytest.fail(f"the connection was still open after {WITHIN}s")
    status_line, _, body = received.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert orjson.loads(body.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"


def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(gateway):
    with connect(gateway.port, timeout=WITHIN) as sock:
        sock.sendall(chat_request(HELLO))
        reader = Reader(sock)
        assert reader.answer().status == 200
        assert reader.until_closed() == b""


def test_a_body_that_stops_coming_gets_408_and_is_closed(gateway, request_id):
    with connect(gateway.port, timeout=WITHIN) as sock:
        sock.sendall(chat_head(len(HELLO), extra=f"x-request-id: {request_id}\r\n".encode())
                     + HELLO[:10])
        reader = Reader(sock)
        answer = reader.answer()
        assert answer.status == 408
        assert answer.json()["error"]["code"] == "request_timeout"
        assert reader.until_closed() == b""
    row = gateway.record(request_id)
    assert (row["status"], row["status_code"], row["error_code"]) == (
        "rejected", 408, "request_timeout"), "recorded as what it was answered"


# -- refusals behind pipelined requests ----------------------------------------------------------

#: A stream of over a megabyte from the mock: its answer is still being written while a client
#: with a small receive buffer does not read.
BIG_STREAM = orjson.dumps(chat_body(stream=True, n=128, messages=[
    {"role": "user", "content": "word " * 2000}]))


def test_a_pipelined_body_that_stops_coming_gets_its_408_after_the_answers_before_it(
        gateway, request_id):
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WITHIN * 10)
        sock.connect(("127.0.0.1", gateway.port))
        stalled = chat_head(len(HELLO), extra=f"x-request-id: {request_id}\r\n".encode())
        # Six streams, more than the kernel's buffers hold: still being written when the
        # body is overdue.
        sock.sendall(chat_request(BIG_STREAM) * 6 + stalled + HELLO[:-5])
        time.sleep(3 * TIMEOUT)
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(7)]
        assert reader.until_closed() == b""
    for stream in answers[:6]:
        assert stream.status == 200 and stream.body.rstrip().endswith(b"data: [DONE]")
    assert answers[6].status == 408
    assert answers[6].headers["x-request-id"] == request_id
    row = gateway.record(request_id)
    assert (row["status"], row["status_code"]) == ("rejected", 408)


def test_a_pipelined_request_refused_in_its_body_is_recorded_as_refused_not_as_what_its_app_finds(
        gateway, request_id):
    # No key: its app, run once the streams ahead are answered, would refuse it with 401; the
    # client was answered 408, and that is its record.
    stalled = (f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(HELLO)}\r\nx-request-id: {request_id}\r\n\r\n").encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WITHIN * 10)
        sock.connect(("127.0.0.1", gateway.port))
        # Six streams, more than the kernel's buffers hold: still being written when the
        # body is overdue.
        sock.sendall(chat_request(BIG_STREAM) * 6 + stalled + HELLO[:-5])
        time.sleep(3 * TIMEOUT)
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(7)]
    assert [a.status for a in answers] == [200] * 6 + [408]
    row = gateway.record(request_id)
    assert (row["status_code"], row["error_code"]) == (408, "request_timeout")


def test_an_unreadable_pipelined_body_gets_its_400_after_the_answer_before_it(gateway,
                                                                            request_id):
    bad = chat_head(None, extra=f"x-request-id: {request_id}\r\n".encode()) + b"zz\r\n{}\r\n"
    with connect(gateway.port, timeout=WITHIN) as sock:
        sock.sendall(chat_request(HELLO) + bad)
        reader = Reader(sock)
        first, second = reader.answer(), reader.answer()
        assert reader.until_closed() == b""
    assert first.status == 200 and first.json()["object"] == "chat.completion"
    assert second.status == 400
    assert second.json()["error"]["code"] == "invalid_http_request"
    assert second.headers["x-request-id"] == request_id, "the id its record has"
    row = gateway.record(request_id)
    assert (row["status"], row["status_code"]) == ("rejected", 400)


def test_a_request_answered_before_its_body_came_gets_no_second_answer_when_it_stops(gateway):
    # Declared over the body limit: answered 413 at once; then the body stops coming.
    head = chat_head(20_000_000)
    with connect(gateway.port, timeout=WITHIN) as sock:
        sock.sendall(head + b"{" * 100)
        reader = Reader(sock)
        assert reader.answer().status == 413
        assert reader.until_closed() == b"", "closed, with no 408 for an answered request"


def test_requests_pipelined_behind_a_chunked_one_then_idle_are_closed_without_a_408(gateway):
    # The rest of the read after the chunked body is parsed with it: no request is left
    # half-read for the header timeout to answer.
    with connect(gateway.port, timeout=WITHIN) as sock:
        sock.sendall(chat_head(None) + chunked(HELLO) + chat_request(HELLO))
        reader = Reader(sock)
        assert [reader.answer().status for _ in range(2)] == [200, 200]
        assert reader.until_closed() == b"", "closed at the keep-alive timeout, unanswered"


def _messages_head(length: int, extra: bytes = b"") -> bytes:
    return (b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: " + CLIENT_KEY.encode()
            + b"\r\nanthropic-version: 2023-06-01\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\n" % length + extra + b"\r\n")


@pytest.mark.parametrize("sent, status", [
    pytest.param(_messages_head(len(HELLO)) + HELLO[:10], 408, id="a_body_that_stops_coming"),
    pytest.param(b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\n", 408,
                 id="a_head_that_stops_coming"),
    pytest.param(_messages_head(0, b"".join(b"X-F-%03d: v\r\n" % i for i in range(150))), 431,
                 id="too_many_headers"),
    pytest.param(_messages_head(2, b"Content-Length: 3\r\n") + b"{}", 400,
                 id="two_content_lengths"),
    pytest.param(_messages_head(0, b"X-Long: " + b"v" * 70_000 + b"\r\n"), 431,
                 id="a_head_past_64_KiB_in_one_write"),
])
def test_what_the_protocol_refuses_on_the_messages_door_is_in_anthropics_shape(gateway, sent,
                                                                             status):
    with connect(gateway.port, timeout=WITHIN) as sock:
        sock.sendall(sent)
        answer = Reader(sock).answer()
    assert answer.status == status
    body = answer.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body


def test_a_large_body_on_a_slow_link_is_not_cut_while_it_keeps_coming(gateway):
    body = orjson.dumps(chat_body(max_tokens=5, messages=[
        {"role": "user", "content": "x" * 1_000_000}]))
    with connect(gateway.port) as sock:
        sock.sendall(chat_head(len(body)))
        for i in range(0, len(body), 32 * 1024):  # ~1.5 s in all, three body timeouts
            sock.sendall(body[i:i + 32 * 1024])
            time.sleep(0.05)
        assert Reader(sock).answer().status == 200


# -- the connection limit ----------------------------------------------------------------------

def test_at_the_limit_the_longest_waiting_connections_make_room(tmp_path):
    server = GatewayServer(tmp_path, PROVIDER="mock", CIRCUIT_MAX_CONNECTIONS=20,
                           CIRCUIT_HEADER_TIMEOUT=60).start()
    idle: list[socket.socket] = []
    try:
        for _ in range(25):
            idle.append(connect(server.port))
            time.sleep(0.01)  # in order of arrival
        answers = [httpx.post(server.url + CHAT, content=HELLO, timeout=10,
                              headers={"Authorization": f"Bearer {CLIENT_KEY}"}).status_code
                   for _ in range(5)]
        closed = [closed_by_server(sock, 0.1) for sock in idle]
    finally:
        for sock in idle:
            sock.close()
        server.stop()
    assert answers == [200] * 5
    # The 21st to 25th idle connections took the places of the first five; the first request
    # the sixth's; a later one another, when the one before it is not yet known to be gone.
    assert closed == sorted(closed, reverse=True), "the longest waiting go first"
    assert 6 <= sum(closed) <= 10


def test_when_every_connection_is_busy_a_new_one_gets_503_at_once(tmp_path, upstream):
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY, CIRCUIT_MAX_CONNECTIONS=3).start()
    upstream.script(*[Behaviour(hang=3.0)] * 3)
    busy = [threading.Thread(target=httpx.post, args=(server.url + CHAT,), kwargs={
        "content": HELLO, "timeout": 30, "headers": {"Authorization": f"Bearer {CLIENT_KEY}"}})
        for _ in range(3)]
    try:
        for thread in busy:
            thread.start()
        assert upstream.wait_for(lambda: upstream.calls == 3, timeout=10)
        refused = httpx.post(server.url + CHAT, content=HELLO, timeout=10,
                             headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        still_busy = [thread.is_alive() for thread in busy]
        for thread in busy:
            thread.join(30)
        after = httpx.post(server.url + CHAT, content=HELLO, timeout=10,
                           headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    finally:
        server.stop()
    assert still_busy == [True] * 3, "refused while the three were in flight, not after"
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "too_many_connections"
    assert after.status_code == 200, "a slot freed is a slot used"


@pytest.mark.skipif(not os.path.exists("/usr/bin/prlimit"), reason="needs prlimit")
def test_under_1024_open_files_idle_and_slow_clients_do_not_starve_normal_ones(
        tmp_path, upstream):
    gateway = GatewayProcess(tmp_path, prefix=["prlimit", "--nofile=1024"], PROVIDER="openai",
                             OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY=PROVIDER_KEY,
                             CIRCUIT_HEADER_TIMEOUT=120).wait_ready()
    held: list[socket.socket] = []
    try:
        for _ in range(1100):
            held.append(socket.create_connection(("127.0.0.1", gateway.port), timeout=10))
        for _ in range(100):  # slowloris: heads that never end
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
            sock.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: gw\r\nX-Slow: 1\r\n")
            held.append(sock)
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0,
                            timeout=30)
        statuses = []
        for i in range(50):
            if i % 2:
                statuses.append(sdk.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                    max_tokens=5).http_response.status_code)
            else:  # a new connection each time
                statuses.append(httpx.post(gateway.url + CHAT, content=HELLO, timeout=30,
                                           headers={"Authorization": f"Bearer {CLIENT_KEY}"}
                                           ).status_code)
        descriptors = gateway.fd_count()
        sdk.close()
    finally:
        for sock in held:
            sock.close()
        gateway.kill()
    assert statuses == [200] * 50, "every normal request answered while 1,200 others waited"
    assert descriptors < 1024
    assert "Too many open files" not in gateway.stderr()
