"""The 64 KiB limit on request heads counts head bytes only: long prompts are normal traffic,
whichever client sends them and however the bytes fall into reads.

aiohttp writes a request's head and body in one write, httpx apart; raw sockets cover a head's
end split across writes and pipelined requests. The gateway runs `circuit serve`'s protocol
(tests.support.gateway_server) on the mock provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import aiohttp
import httpx
import orjson
import pytest

from tests.support.gateway_server import CLIENT_KEY, GatewayServer
from tests.support.raw_http import (
    CHAT,
    Reader,
    chat_head,
    chat_request,
    chunked,
    connect,
    exchange,
)

BODY_LIMIT = 8 * 1024 * 1024
SIZES = [pytest.param(100_000, id="100KB"), pytest.param(1_000_000, id="1MB"),
         pytest.param(5_000_000, id="5MB")]
HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("heads-gw"), PROVIDER="mock",
                           CIRCUIT_MAX_BODY_BYTES=BODY_LIMIT).start()
    yield server
    server.stop()


def _repeats(size: int, times: int) -> int:
    """How often to send a body: the head-and-body-in-one-read case is a matter of chance,
    so small bodies go often; a 5 MB one (a second of the mock's counting) a few times."""
    return times if size <= 1_000_000 else 3


def long_prompt(size: int) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5,
                         "messages": [{"role": "user", "content": "x" * size}]})


def assert_answered(status: int, body: bytes) -> None:
    assert status == 200, body[:300]
    assert orjson.loads(body)["object"] == "chat.completion"


@pytest.mark.parametrize("size", SIZES)
def test_long_prompts_from_aiohttp_are_answered(gateway, size):
    body = long_prompt(size)

    async def send_all() -> list[tuple[int, bytes]]:
        async with aiohttp.ClientSession() as session:
            answers = []
            for _ in range(_repeats(size, 10)):
                async with session.post(gateway.url + CHAT, data=body,
                                        headers=HEADERS) as response:
                    answers.append((response.status, await response.read()))
            return answers

    for status, answer in asyncio.run(send_all()):
        assert_answered(status, answer)


@pytest.mark.parametrize("size", SIZES)
def test_long_prompts_from_httpx_are_answered(gateway, size):
    body = long_prompt(size)
    with httpx.Client(timeout=30) as client:
        for _ in range(_repeats(size, 5)):
            response = client.post(gateway.url + CHAT, content=body, headers=HEADERS)
            assert_answered(response.status_code, response.content)


@pytest.mark.parametrize("size", SIZES)
def test_long_prompts_written_with_their_head_in_one_write_are_answered(gateway, size):
    for _ in range(3):
        answer = exchange(gateway.port, chat_request(long_prompt(size)))
        assert_answered(answer.status, answer.body)


@pytest.mark.parametrize("split", [1, 2, 3], ids=["before_last_byte", "mid", "after_first_cr"])
def test_a_head_whose_end_is_split_across_writes_is_not_counted_with_its_body(gateway, split):
    # A head just under the limit: were the body counted with it, it would be over.
    body = long_prompt(100_000)
    head = chat_head(len(body), extra=b"X-Pad: " + b"p" * (60 * 1024) + b"\r\n")
    with connect(gateway.port) as sock:
        sock.sendall(head[:-split])
        time.sleep(0.05)  # lets the server read the first part on its own
        sock.sendall(head[-split:] + body)
        answer = Reader(sock).answer()
    assert_answered(answer.status, answer.body)


def test_pipelined_requests_with_long_prompts_are_all_answered(gateway):
    body = long_prompt(100_000)
    with connect(gateway.port) as sock:
        sock.sendall(chat_request(body) * 3)
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(3)]
    for answer in answers:
        assert_answered(answer.status, answer.body)


def test_a_pipelined_request_after_a_chunked_one_is_answered(gateway):
    body = long_prompt(100_000)
    with connect(gateway.port) as sock:
        sock.sendall(chat_head(None) + chunked(body) + chat_request(body))
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(2)]
    for answer in answers:
        assert_answered(answer.status, answer.body)


def test_a_chunked_body_over_the_body_limit_gets_413(gateway):
    with connect(gateway.port) as sock:
        sock.sendall(chat_head(None, close=True) + chunked(long_prompt(BODY_LIMIT + 1)))
        answer = Reader(sock).answer()
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "request_too_large"


# -- heads over the limit ----------------------------------------------------------------------

@pytest.mark.parametrize("parts", [1, 50], ids=["one_write", "fifty_writes"])
def test_a_head_over_64_kib_gets_431_in_openai_shape(gateway, parts):
    head = chat_head(2, extra=b"X-Big: " + b"a" * (65 * 1024) + b"\r\n")
    answer = exchange(gateway.port, head + b"{}", parts=parts)
    assert answer.status == 431
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": {"message": "Request headers are too large",
                                       "type": "invalid_request_error",
                                       "code": "request_header_fields_too_large"}}
    assert answer.headers["connection"] == "close"


def test_more_than_100_headers_get_431(gateway):
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    answer = exchange(gateway.port, chat_head(2, extra=extra) + b"{}")
    assert answer.status == 431
    assert answer.json()["error"]["code"] == "request_header_fields_too_large"


#: chat_head's own headers: Host, Authorization, Content-Type and the framing one.
OWN_HEADERS = 4
SMALL = long_prompt(10)


def _fillers(count: int) -> bytes:
    return b"".join(b"X-H%d: v\r\n" % i for i in range(count))


@pytest.mark.parametrize("parts", [1, 40], ids=["one_write", "forty_writes"])
def test_exactly_100_headers_are_answered(gateway, parts):
    answer = exchange(gateway.port, chat_request(SMALL, extra=_fillers(100 - OWN_HEADERS)),
                      parts=parts)
    assert_answered(answer.status, answer.body)


@pytest.mark.parametrize("parts", [1, 40], ids=["one_write", "forty_writes"])
def test_the_101st_header_gets_431(gateway, parts):
    answer = exchange(gateway.port, chat_request(SMALL, extra=_fillers(101 - OWN_HEADERS)),
                      parts=parts)
    assert answer.status == 431
    assert answer.json()["error"] == {"message": "More than 100 request headers",
                                      "type": "invalid_request_error",
                                      "code": "request_header_fields_too_large"}


def _messages_request() -> bytes:
    body = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5,
                         "messages": [{"role": "user", "content": "hi"}]})
    return (b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: " + CLIENT_KEY.encode()
            + b"\r\nanthropic-version: 2023-06-01\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize("refused", [
    pytest.param(chat_request(SMALL, extra=_fillers(101)), id="too_many_headers"),
    pytest.param(chat_head(2, extra=b"X-Big: " + b"a" * (70 * 1024) + b"\r\n") + b"{}",
                 id="a_head_over_64_KiB"),
])
def test_a_chat_request_refused_behind_an_anthropic_one_gets_openais_shape(gateway, refused):
    # One read holds both: the Anthropic request's anthropic-version is not the chat one's.
    with connect(gateway.port) as sock:
        sock.sendall(_messages_request() + refused)
        reader = Reader(sock)
        first, second = reader.answer(), reader.answer()
    assert first.status == 200 and first.json()["type"] == "message"
    assert second.status == 431
    assert second.json()["error"]["code"] == "request_header_fields_too_large", second.json()


def test_too_many_headers_pipelined_behind_a_chunked_request_get_431(gateway):
    # In one write: the pipelined head is parsed with the chunked body before it, so it is
    # counted after its parse, not before.
    with connect(gateway.port) as sock:
        sock.sendall(chat_head(None) + chunked(SMALL)
                     + chat_request(SMALL, extra=_fillers(150)))
        reader = Reader(sock)
        first, second = reader.answer(), reader.answer()
    assert_answered(first.status, first.body)
    assert second.status == 431
    assert second.json()["error"]["code"] == "request_header_fields_too_large"


def test_a_body_of_many_lines_behind_a_chunked_request_is_not_counted_as_headers(gateway):
    # Pretty-printed JSON of 160-odd lines, in the read that brought the chunked request.
    pretty = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [
        {"role": "user", "content": f"line {i}"} for i in range(40)]},
        option=orjson.OPT_INDENT_2)
    assert pretty.count(b"\n") > 150
    with connect(gateway.port) as sock:
        sock.sendall(chat_head(None) + chunked(SMALL) + chat_request(pretty))
        time.sleep(0.1)
        sock.sendall(chat_request(SMALL, extra=_fillers(100 - OWN_HEADERS)))
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(3)]
    for answer in answers:
        assert_answered(answer.status, answer.body)


def test_a_head_over_64_kib_behind_a_chunked_request_and_a_body_split_across_reads_gets_431(
        gateway):
    body = long_prompt(30_000)
    second = chat_request(body)
    with connect(gateway.port) as sock:
        sock.sendall(chat_head(None) + chunked(SMALL) + second[:-100])
        time.sleep(0.1)
        sock.sendall(second[-100:] + chat_head(2, extra=b"X-Big: " + b"a" * (78 * 1024)
                                               + b"\r\n") + b"{}")
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 431]
    assert answers[2].json()["error"]["message"] == "Request headers are too large"


def test_trailer_fields_past_100_get_431(gateway):
    trailers = b"".join(b"X-T%d: v\r\n" % i for i in range(150))
    body = b"%x\r\n%s\r\n0\r\n" % (len(SMALL), SMALL) + trailers + b"\r\n"
    answer = exchange(gateway.port, chat_head(None) + body)
    assert answer.status == 431
    assert answer.json()["error"]["message"] == "More than 100 request headers"


def test_a_trailer_field_that_never_ends_gets_431(gateway):
    with connect(gateway.port) as sock:
        sock.sendall(chat_head(None) + b"%x\r\n%s\r\n0\r\nX-T: " % (len(SMALL), SMALL))
        answer = None
        with contextlib.suppress(OSError):
            for _ in range(64):  # 4 MiB of one field, unless refused before
                sock.sendall(b"a" * 65536)
        answer = Reader(sock).answer()
    assert answer.status == 431
    assert answer.json()["error"]["code"] == "request_header_fields_too_large"


def test_one_byte_chunks_are_taken(gateway):
    framed = b"".join(b"1\r\n%s\r\n" % SMALL[i:i + 1] for i in range(len(SMALL)))
    answer = exchange(gateway.port, chat_head(None) + framed + b"0\r\n\r\n")
    assert_answered(answer.status, answer.body)


def test_a_head_over_64_kib_in_the_read_that_ends_a_chunked_body_gets_431(gateway):
    big = chat_head(2, extra=b"X-Big: " + b"a" * (70 * 1024) + b"\r\n") + b"{}"
    with connect(gateway.port) as sock:
        sock.sendall(chat_head(None) + chunked(SMALL) + big)
        reader = Reader(sock)
        first, second = reader.answer(), reader.answer()
    assert_answered(first.status, first.body)
    assert second.status == 431
    assert second.json()["error"]["message"] == "Request headers are too large"


@pytest.mark.parametrize("refused, status", [
    pytest.param(chat_request(SMALL, extra=_fillers(150)), 431, id="too_many_headers"),
    pytest.param(chat_head(2, extra=b"X-Big: " + b"a" * (65 * 1024) + b"\r\n") + b"{}", 431,
                 id="a_head_over_64_KiB"),
    pytest.param(b"POST /v1/chat/completions HTTP/1.1\r\nBad Header\r\n\r\n", 400,
                 id="an_unreadable_head"),
])
def test_a_refused_request_behind_pipelined_ones_is_answered_after_them(gateway, refused,
                                                                       status):
    with connect(gateway.port) as sock:
        sock.sendall(chat_request(long_prompt(100_000)) + chat_request(SMALL) + refused)
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(3)]
        assert reader.until_closed() == b""
    for answer in answers[:2]:
        assert_answered(answer.status, answer.body)
    assert answers[2].status == status
    assert answers[2].headers["connection"] == "close"


def test_a_request_the_parser_cannot_read_gets_400_in_openai_shape(gateway):
    answer = exchange(gateway.port, b"GET / HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n")
    assert answer.status == 400
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_http_request"
    assert answer.headers["connection"] == "close"
