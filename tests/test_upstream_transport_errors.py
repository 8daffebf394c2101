"""Answers the gateway's HTTP client cannot read — headers past its limit, a header line that
is not one, a body cut short — and a redirect: each becomes the gateway's own error, worded by
the gateway. aiohttp's text for them quotes the raw bytes it choked on (an upstream's headers
may echo the key) and names the upstream's URL, so none of it reaches a client or a record;
and a redirect is never followed (it would take the request, and to the same host the key,
wherever the upstream points)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.raw_upstream import RawUpstream
from tests.support.gateway_server import CLIENT_KEY, GatewayServer

HELLO = [{"role": "user", "content": "hello"}]
KEY_BYTES = PROVIDER_KEY.encode()

ANSWERS = {
    "headers past the limit": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               b"X-Echo: " + KEY_BYTES * 400 + b"\r\nContent-Length: 2\r\n\r\n{}",
                               "bad_upstream_response"),
    "a header line that is not one": (b"HTTP/1.1 200 OK\r\n" + KEY_BYTES + b"\r\n"
                                      b"Content-Length: 2\r\n\r\n{}", "bad_upstream_response"),
    "a body cut short": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 400\r\n\r\n{\"id\": \"" + KEY_BYTES, None),
}


def _leaks(text: str) -> list[str]:
    """What of the gateway's internals `text` shows: the key (any 10 characters of it),
    aiohttp's words for its errors, the upstream's address."""
    found = [PROVIDER_KEY[i:i + 10] for i in range(len(PROVIDER_KEY) - 9)
             if PROVIDER_KEY[i:i + 10] in text]
    found += [word for word in ("message=", "url=", "127.0.0.1", "ClientResponseError",
                                "ContentLengthError", "b'") if word in text]
    return found


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(base_url: str) -> GatewayServer:
        server = GatewayServer(tmp_path / str(len(servers)), PROVIDER="openai",
                               OPENAI_BASE_URL=base_url, OPENAI_API_KEY=PROVIDER_KEY,
                               CIRCUIT_RETRY_MAX_ATTEMPTS=3,
                               CIRCUIT_RETRY_BACKOFF_INITIAL=0.01).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("case", list(ANSWERS))
def test_an_unreadable_answer_is_the_gateways_502_in_its_own_words(serve, request_id, case,
                                                                   stream):
    answer, code = ANSWERS[case]
    with RawUpstream(answer) as upstream:
        gateway = serve(upstream.base_url)
        response = httpx.post(gateway.url + "/v1/chat/completions",
                              json={"model": "gpt-4o-mini", "messages": HELLO, "stream": stream},
                              headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                       "x-request-id": request_id}, timeout=15)
        row = gateway.record(request_id)
    assert response.status_code == 502
    error = response.json()["error"]
    if code is not None:
        assert error["code"] == code
    assert error["message"].startswith("openai ")
    assert _leaks(response.text) == []
    assert _leaks(row["error_message"] or "") == [] and row["status"] == "failed"


def test_a_redirect_is_not_followed(serve, request_id):
    with FakeOpenAI() as elsewhere, RawUpstream(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + elsewhere.base_url.encode()
            + b"/chat/completions\r\nContent-Length: 0\r\n\r\n") as upstream:
        gateway = serve(upstream.base_url)
        response = httpx.post(gateway.url + "/v1/chat/completions",
                              json={"model": "gpt-4o-mini", "messages": HELLO},
                              headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                       "x-request-id": request_id}, timeout=15)
        assert upstream.requests == 1 and elsewhere.calls == 0, "asked once: not retried"
    assert response.status_code == 502
    assert "redirect (307)" in response.json()["error"]["message"]
    row = gateway.record(request_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
