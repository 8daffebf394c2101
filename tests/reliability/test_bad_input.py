"""Bad input never makes the gateway fail: a 4xx in OpenAI's shape (or, for what is not HTTP at
all, a 400 from the parser and a closed connection), never a 5xx or a traceback, and every
chat-completion request that reached the gateway leaves exactly one record.

Generated input comes from schemathesis, from the OpenAPI description the gateway serves;
hand-written cases cover what a schema cannot say: sizes, encodings, nesting, content types,
header floods, odd JSON, methods and paths. The gateway runs on the mock provider on a real port,
with a 64 KiB body limit.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest

from circuit.keys import create_key
from circuit.store.sqlite import SQLiteStore
from tests.reliability.support import (
    CHAT,
    TRACEBACK,
    auth,
    chat_body,
    duplicated_ids,
    is_anthropic_error,
    is_openai_error,
    parse_answer,
    raw_exchange,
    wait_for_rows,
)
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

LIMIT = 64 * 1024
FUZZ_EXAMPLES = int(os.environ.get("CIRCUIT_FUZZ_EXAMPLES", "50"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("bad-input-gw"), PROVIDER="mock",
                           CIRCUIT_MAX_BODY_BYTES=LIMIT).start()
    yield server
    server.stop()


def request_bytes(method: str, path: str, body: bytes = b"", *, headers: bytes = b"",
                  request_id: str | None = None) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode()
    if request_id is not None:
        head += f"x-request-id: {request_id}\r\n".encode()
    return head + headers + b"\r\n" + body


def assert_no_failure(status: int, body: bytes, content_type: str = "",
                      anthropic: bool = False) -> None:
    """A 2xx/3xx, or a 4xx in its door's shape (OpenAI's, or Anthropic's on the Messages
    door); never a 5xx, never a traceback."""
    assert status < 500, body[:300]
    assert TRACEBACK.encode() not in body
    if status >= 400 and content_type.startswith("application/json"):
        shape = is_anthropic_error if anthropic else is_openai_error
        assert shape(orjson.loads(body)), body[:300]


def one_row(gateway: GatewayServer, request_id: str) -> dict:
    rows = gateway.records(request_id)
    time.sleep(0.05)
    rows = gateway.records(request_id, timeout=0)
    assert len(rows) == 1, f"{len(rows)} records for {request_id}"
    return rows[0]


# -- generated from the OpenAPI description ----------------------------------------------------

@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_requests_get_no_5xx_and_every_error_has_openai_shape(gateway, mode,
                                                                        tmp_path_factory):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.configuration import set_hypothesis_home_dir
    from hypothesis.errors import Unsatisfiable

    # Hypothesis keeps caches in ./.hypothesis; keep them out of the work tree.
    set_hypothesis_home_dir(tmp_path_factory.getbasetemp() / "hypothesis")

    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"POST /v1/chat/completions", "POST /v1/messages", "POST /v1/responses"} <= {
        op.label for op in operations}
    chat_ids: list[str] = []

    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), print_blob=True)
        def run(case):
            request_id = f"fuzz-{uuid.uuid4().hex[:16]}"
            response = case.call(headers={**auth(request_id=request_id)}, timeout=10)
            content_type = (response.headers.get("content-type") or [""])[0]
            assert_no_failure(response.status_code, response.content, content_type,
                              anthropic=case.operation.path.startswith("/v1/messages"))
            if case.operation.label == "POST /v1/chat/completions":
                chat_ids.append(request_id)

        try:
            run()
        except Unsatisfiable:
            # Nothing to vary (no body, no parameters): no negative case exists.
            assert mode == "negative", operation.label

    rows = wait_for_rows(gateway.db_path, chat_ids, columns="request_id")
    assert set(chat_ids) <= rows.keys(), "every generated chat request has its record"
    assert duplicated_ids(r for rid in chat_ids for r in rows[rid]) == {}


# -- sizes -------------------------------------------------------------------------------------

def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(gateway, request_id):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(request_bytes("POST", CHAT, request_id=request_id).replace(
            b"Content-Length: 0", b"Content-Length: 104857600"))
        status, headers, body = parse_answer(sock.recv(65536))  # no byte of the body sent
    assert status == 413 and orjson.loads(body)["error"]["code"] == "request_too_large"
    assert one_row(gateway, request_id)["status"] == "rejected"


def test_a_chunked_body_over_the_limit_gets_413_while_it_is_still_arriving(gateway, request_id):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(request_bytes("POST", CHAT, request_id=request_id).replace(
            b"Content-Length: 0", b"Transfer-Encoding: chunked"))
        for _ in range(LIMIT // 8192 + 1):
            sock.sendall(b"2000\r\n" + b"x" * 8192 + b"\r\n")
        status, _, body = parse_answer(sock.recv(65536))  # the body never ended
    assert status == 413 and orjson.loads(body)["error"]["code"] == "request_too_large"
    assert one_row(gateway, request_id)["status_code"] == 413


def test_a_client_that_leaves_during_its_upload_is_recorded_as_client_disconnected(
        gateway, request_id):
    partial = request_bytes("POST", CHAT, request_id=request_id).replace(
        b"Content-Length: 0", b"Content-Length: 1000") + b'{"model": '
    raw_exchange(gateway.port, partial, then_read=False)
    row = one_row(gateway, request_id)
    assert row["status"] == "client_disconnected"
    assert row["error_code"] != "internal_error"


@pytest.fixture
def roomy_gateway(tmp_path_factory: pytest.TempPathFactory, upstream) -> Iterator[GatewayServer]:
    """A gateway in front of the fake OpenAI upstream with the default 10 MiB body limit."""
    server = GatewayServer(tmp_path_factory.mktemp("roomy-gw"), PROVIDER="openai",
                           OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY="sk-up").start()
    yield server
    server.stop()


def test_a_huge_prompt_is_never_tokenized_on_the_event_loop(roomy_gateway, monkeypatch):
    # 1.5M CJK characters, 4.5 MB: tokenizing it takes about a second, which must not be spent
    # on the event loop. Counted, not timed: every tokenizer call notes its thread.
    from circuit.accounting.tokens import TokenCounter

    threads: list[str] = []
    for name in ("count_text", "count_messages"):
        original = getattr(TokenCounter, name)

        def spy(self, *args, _original=original):
            threads.append(threading.current_thread().name)
            return _original(self, *args)

        monkeypatch.setattr(TokenCounter, name, spy)
    text = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(1_500_000))
    # A budget too small for the byte bound, so the prompt must be counted exactly.
    store = SQLiteStore(roomy_gateway.db_path)
    secret = create_key(store, "huge-prompt", daily_limit_usd=0.5)
    store.close()
    body = orjson.dumps(chat_body(messages=[{"role": "user", "content": text}], max_tokens=5))
    for _ in range(100):
        response = httpx.post(roomy_gateway.url + CHAT, content=body, headers={
            "Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            timeout=60)
        if response.status_code != 401:
            break
        time.sleep(0.05)
    assert response.status_code in (200, 429), response.text
    assert threads, "the prompt was counted exactly"
    assert roomy_gateway._thread.name not in threads


# -- nesting and encodings ---------------------------------------------------------------------

def test_nesting_deeper_than_the_parser_allows_gets_400(gateway, request_id):
    deep = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    body = b'{"model": "gpt-4o-mini", "x": ' + deep + b', "messages": []}'
    response = httpx.post(gateway.url + CHAT, content=body, headers=auth(request_id=request_id))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert one_row(gateway, request_id)["status_code"] == 400


def test_nesting_the_parser_accepts_is_served(gateway, request_id):
    content = b"[" * 1000 + b"]" * 1000
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ' + content + b"}]}"
    response = httpx.post(gateway.url + CHAT, content=body, headers=auth(request_id=request_id))
    assert response.status_code == 200
    assert one_row(gateway, request_id)["status"] == "ok"


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"model": "gpt-4o-mini\xff", "messages": []}', id="invalid_byte_in_a_value"),
    pytest.param(b'{"mod\xc3el": "gpt-4o-mini", "messages": []}', id="invalid_byte_in_a_key"),
    pytest.param(b'{"model": "\xc0\xaf", "messages": []}', id="overlong_encoding"),
    pytest.param(b'{"model": "gpt\xe4\xb8", "messages": []}', id="truncated_sequence"),
    pytest.param(b'{"model": "\\ud800", "messages": []}', id="lone_surrogate_escape"),
    pytest.param(orjson.dumps(chat_body()).decode().encode("utf-16"), id="utf16_body"),
    pytest.param(b"\xef\xbb\xbf" + orjson.dumps(chat_body()), id="byte_order_mark"),
])
def test_a_body_that_is_not_utf8_json_gets_400_invalid_json(gateway, request_id, raw):
    response = httpx.post(gateway.url + CHAT, content=raw, headers=auth(request_id=request_id))
    assert response.status_code == 400
    assert is_openai_error(response.json()) and response.json()["error"]["code"] == "invalid_json"
    assert one_row(gateway, request_id)["error_code"] == "invalid_json"


# -- content types -----------------------------------------------------------------------------

GOOD = orjson.dumps(chat_body())


@pytest.mark.parametrize("content_type, body, status", [
    pytest.param("text/plain", GOOD, 200, id="json_sent_as_text_plain"),
    pytest.param(None, GOOD, 200, id="json_without_a_content_type"),
    pytest.param("application/xml", b"<chat><model>gpt-4o-mini</model></chat>", 400,
                 id="xml"),
    pytest.param("multipart/form-data; boundary=xx",
                 b'--xx\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o-mini\r\n'
                 b"--xx--\r\n", 400, id="multipart_form"),
    pytest.param("application/x-www-form-urlencoded", b"model=gpt-4o-mini&messages=hi", 400,
                 id="form_fields"),
])
def test_the_body_decides_not_the_content_type(gateway, request_id, content_type, body, status):
    headers = auth(request_id=request_id)
    headers.pop("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = httpx.post(gateway.url + CHAT, content=body, headers=headers)
    assert response.status_code == status
    if status != 200:
        assert response.json()["error"]["code"] == "invalid_json"
    assert one_row(gateway, request_id)["status_code"] == status


# -- header floods -----------------------------------------------------------------------------

@pytest.mark.parametrize("headers, status", [
    # Past 100 headers or 64 KiB of head, `circuit serve`'s protocol answers 431.
    pytest.param(b"".join(b"X-Filler-%03d: %s\r\n" % (i, b"v" * 100) for i in range(90)), 200,
                 id="ninety_headers"),
    pytest.param(b"".join(b"X-Filler-%03d: %s\r\n" % (i, b"v" * 100) for i in range(300)), 431,
                 id="three_hundred_headers"),
    pytest.param(b"X-Long: " + b"v" * 60000 + b"\r\n", 200, id="a_60_KB_header"),
    pytest.param(b"X-Long: " + b"v" * 65536 + b"\r\n", 431, id="a_64_KiB_header"),
    pytest.param(b"x-request-id: " + b"r" * 60000 + b"\r\n", 200, id="a_60_KB_request_id"),
    pytest.param(b"x-request-id: " + b"r" * 65536 + b"\r\n", 431, id="a_64_KiB_request_id"),
    pytest.param(b"Authorization: Bearer " + b"k" * 60000 + b"\r\n", 200,
                 id="a_second_60_KB_authorization"),
    pytest.param(b"X-Latin: caf\xe9 \xff\r\n", 200, id="non_ascii_bytes_in_a_header"),
])
def test_a_header_flood_gets_the_ordinary_answer_or_a_4xx_never_a_5xx(gateway, headers, status):
    answer = raw_exchange(gateway.port, request_bytes("POST", CHAT, GOOD, headers=headers))
    code, response_headers, body = parse_answer(answer)
    assert_no_failure(code, body, response_headers.get("content-type", ""))
    assert code == status
    assert 1 <= len(response_headers["x-request-id"]) <= 128, "a long id is replaced, not echoed"


def test_an_authorization_header_of_60_KB_gets_401(gateway, request_id):
    # Just under the 64 KiB head limit (past it: 431, see the header floods above).
    response = httpx.post(gateway.url + CHAT, content=GOOD, headers={
        "Authorization": "Bearer " + "k" * 60000, "x-request-id": request_id})
    assert response.status_code == 401 and is_openai_error(response.json())
    assert one_row(gateway, request_id)["error_code"] == "invalid_api_key"


def test_a_header_with_a_nul_byte_is_refused_by_the_http_parser(gateway):
    answer = raw_exchange(gateway.port, request_bytes("POST", CHAT, GOOD,
                                                      headers=b"X-Nul: a\x00b\r\n"))
    status, _, body = parse_answer(answer)
    assert status == 400 and TRACEBACK.encode() not in body


# -- JSON that parses, with odd values ---------------------------------------------------------

MESSAGES = b'"messages": [{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize("raw, status, code", [
    pytest.param(b'{"model": "gpt-4o-mini", ' + MESSAGES + b', "max_tokens": 1e400}', 400,
                 "invalid_json", id="number_too_large_for_a_double"),
    pytest.param(b'{"model": "gpt-4o-mini", ' + MESSAGES + b', "max_tokens": '
                 b"18446744073709551616}", 429, "quota_exceeded", id="integer_past_64_bits"),
    pytest.param(b'{"model": "gpt-4o-mini", ' + MESSAGES + b', "max_tokens": 9007199254740993}',
                 429, "quota_exceeded", id="max_tokens_no_budget_covers"),
    pytest.param(b'{"model": "gpt-4o-mini", ' + MESSAGES + b', "max_tokens": 1.0}', 400,
                 "invalid_type", id="max_tokens_as_a_float"),
    pytest.param(b'{"model": "gpt-4o-mini", ' + MESSAGES + b', "temperature": NaN}', 400,
                 "invalid_json", id="nan"),
    pytest.param(b'{"model": "gpt-4o-mini", ' + MESSAGES + b', "temperature": Infinity}', 400,
                 "invalid_json", id="infinity"),
    pytest.param(b'{"model": "' + b"m" * 60_000 + b'", ' + MESSAGES + b"}", 200, None,
                 id="a_60_KB_model_name"),
    pytest.param(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
                 + b"word " * 12_000 + b'"}]}', 200, None, id="a_60_KB_prompt"),
    pytest.param(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": '
                 b'"\\u0000"}]}', 200, None, id="a_nul_character"),
    pytest.param(b'{"model": "gpt-4o", "model": "gpt-4o-mini", ' + MESSAGES + b"}", 200, None,
                 id="duplicate_keys"),
    pytest.param(b'{"model": "gpt-4o-mini", ' + MESSAGES + b"} trailing", 400, "invalid_json",
                 id="trailing_garbage"),
    pytest.param(b"null", 400, "invalid_json", id="null"),
    pytest.param(b"{}", 400, "missing_required_parameter", id="empty_object"),
    pytest.param(b'{"model": "gpt-4o-mini", "messages": [{"role": null}]}', 400, "invalid_type",
                 id="null_role"),
    pytest.param(b'{"model": "gpt-4o-mini", ' + MESSAGES + b', "stream": 1}', 400,
                 "invalid_type", id="stream_as_a_number"),
])
def test_odd_json_values_get_a_clear_answer_and_one_record(gateway, request_id, raw, status,
                                                          code):
    response = httpx.post(gateway.url + CHAT, content=raw, headers=auth(request_id=request_id))
    assert response.status_code == status
    if code is not None:
        assert is_openai_error(response.json()) and response.json()["error"]["code"] == code
    row = one_row(gateway, request_id)
    assert (row["status_code"], row["error_code"]) == (status, code)


def test_duplicate_keys_are_read_last_wins(gateway, request_id):
    raw = b'{"model": "gpt-4o", "model": "gpt-4o-mini", ' + MESSAGES + b"}"
    response = httpx.post(gateway.url + CHAT, content=raw, headers=auth(request_id=request_id))
    assert response.json()["model"] == "gpt-4o-mini"
    assert one_row(gateway, request_id)["model"] == "gpt-4o-mini", "billed as what was served"


# -- methods and paths -------------------------------------------------------------------------

# GET is the list of stored chat completions (passed through), so not among them.
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
def test_a_wrong_method_on_chat_completions_gets_405_in_openai_shape(gateway, method):
    status, headers, body = parse_answer(raw_exchange(gateway.port, request_bytes(method, CHAT)))
    assert status == 405 and orjson.loads(body)["error"]["code"] == "method_not_allowed"
    assert headers["x-request-id"]


@pytest.mark.parametrize("method", [b"FOO", b"G\x00T", b"GET GET"])
def test_an_unknown_method_is_refused_by_the_http_parser_and_the_connection_closed(gateway,
                                                                                method):
    answer = raw_exchange(gateway.port, method + b" /v1/chat/completions HTTP/1.1\r\n"
                                                 b"Host: gw\r\nConnection: close\r\n\r\n")
    status, headers, body = parse_answer(answer)
    # Not HTTP the app could see: the server's protocol answers 400, in OpenAI's shape, and
    # closes.
    assert status == 400 and headers.get("connection") == "close"
    assert headers["content-type"] == "application/json" and is_openai_error(orjson.loads(body))


@pytest.mark.parametrize("path", [
    "/v1/../v1/chat/completions",
    "/v1/chat/completions/../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..;/v1/models",
    "//v1/chat/completions",
    "/v1/chat/completions%00",
    "/v1/chat/completions%2f..%2f..%2fetc%2fpasswd",
    "/.env",
    "/circuit.db",
])
def test_a_path_traversal_attempt_gets_404_in_openai_shape(gateway, path):
    answer = raw_exchange(gateway.port, request_bytes("POST", path, GOOD))
    status, _, body = parse_answer(answer)
    assert status == 404 and orjson.loads(body)["error"]["code"] == "not_found"
    assert b"root:" not in body and b"SQLite" not in body


def test_a_query_string_does_not_change_the_route(gateway, request_id):
    answer = raw_exchange(gateway.port, request_bytes(
        "POST", CHAT + "?x=../../etc/passwd&model=other", GOOD, request_id=request_id))
    assert parse_answer(answer)[0] == 200
    assert one_row(gateway, request_id)["model"] == "gpt-4o-mini"
