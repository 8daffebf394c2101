"""Secrets stay secret, keys are checked as promised, and the request limits hold.

`circuit serve` runs as a real process at CIRCUIT_LOG_LEVEL=debug, once per log format, with
every kind of secret in play: a client key from CIRCUIT_API_KEYS, one from the keys table (added
with the CLI while it runs), the provider key, the metrics token, and wrong keys that are someone
else's secrets. After traffic that touches each of them — including an upstream that answers 401
quoting the provider key — none may be found in its log, in any file of its database, in an
error body or in /metrics.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from tests.conftest import PROVIDER_KEY as GATEWAY_PROVIDER_KEY
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.reliability.support import (
    BIN,
    CHAT,
    TRACEBACK,
    GatewayProcess,
    auth,
    chat_body,
    clean_environment,
    database_bytes,
    is_openai_error,
    raw_exchange,
    sse_data,
    wait_for_rows,
)

CONFIG_KEY = "sk-circuit-config-" + secrets.token_hex(16)
PROVIDER_KEY = "sk-provider-" + secrets.token_hex(16)
METRICS_TOKEN = "metrics-" + secrets.token_hex(16)
STRANGER_KEY = "sk-someone-elses-" + secrets.token_hex(16)  # a wrong key, but a real secret
# Same length and prefix as a good key, one character off at the end.
NEAR_MISS_KEY = CONFIG_KEY[:-1] + ("0" if CONFIG_KEY[-1] != "0" else "1")


@dataclass
class Secured:
    gateway: GatewayProcess
    log_format: str
    table_key: str
    secrets: dict[str, str]
    error_bodies: dict[str, str] = field(default_factory=dict)
    #: Streams whose upstream sent an error event quoting the provider key, as received.
    stream_bodies: dict[str, str] = field(default_factory=dict)
    request_ids: list[str] = field(default_factory=list)

    def leaks(self, haystack: bytes) -> list[str]:
        """Names of the secrets found in `haystack`, whole or in part: any 10 characters in a
        row of their random part (a key cut anywhere still leaks)."""
        found = []
        for name, secret in self.secrets.items():
            random_part = secret.rsplit("-", 1)[-1]
            windows = {random_part[i:i + 10] for i in range(len(random_part) - 9)}
            if secret.encode() in haystack or any(w.encode() in haystack for w in windows):
                found.append(name)
        return found


@pytest.fixture(scope="module")
def own_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def _add_table_key(gateway: GatewayProcess) -> str:
    done = subprocess.run([str(BIN / "circuit"), "keys", "add", "security-table", "--json"],
                          env=clean_environment(CIRCUIT_DB_PATH=gateway.db_path),
                          cwd=gateway.folder, capture_output=True, text=True, timeout=60,
                          check=True)
    return json.loads(done.stdout)["key"]


@pytest.fixture(scope="module", params=["text", "json"])
def secured(request: pytest.FixtureRequest, own_upstream: FakeOpenAI,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    upstream = own_upstream
    upstream.reset()
    gateway = GatewayProcess(
        tmp_path_factory.mktemp(f"secrets-{request.param}"), PROVIDER="openai",
        OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY=PROVIDER_KEY,
        CIRCUIT_API_KEYS=CONFIG_KEY, CIRCUIT_METRICS_TOKEN=METRICS_TOKEN,
        CIRCUIT_LOG_LEVEL="debug", CIRCUIT_LOG_FORMAT=request.param).wait_ready()
    try:
        table_key = _add_table_key(gateway)
        result = Secured(gateway, request.param, table_key, {
            "config key": CONFIG_KEY, "table key": table_key, "provider key": PROVIDER_KEY,
            "metrics token": METRICS_TOKEN, "stranger's key": STRANGER_KEY,
            "near-miss key": NEAR_MISS_KEY})

        def call(name: str, key: str, **body) -> httpx.Response:
            request_id = f"sec-{name}"
            result.request_ids.append(request_id)
            response = httpx.post(gateway.url + CHAT, json=chat_body(**body),
                                  headers=auth(key, request_id), timeout=10)
            if response.status_code != 200:
                result.error_bodies[name] = response.text
            return response

        assert call("config-key", CONFIG_KEY).status_code == 200
        for attempt in range(30):  # the table key works within a second
            if call(f"table-key-stream-{attempt}", table_key, stream=True).status_code == 200:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the key added from the CLI never worked")
        call("near-miss", NEAR_MISS_KEY)
        call("stranger", STRANGER_KEY)
        upstream.script(Behaviour(status=401,
                                  error_message=f"Incorrect API key provided: {PROVIDER_KEY}"))
        call("upstream-401", CONFIG_KEY)
        # An upstream 400 that echoes the key in every field, and one whose message puts it
        # across the 500th character, where a message is cut.
        upstream.script(Behaviour(status=400, error_code=PROVIDER_KEY, error_type=PROVIDER_KEY,
                                  error_message=f"bad key {PROVIDER_KEY}"))
        call("upstream-400-code", CONFIG_KEY)
        upstream.script(Behaviour(status=400, error_message="x" * 470 + PROVIDER_KEY))
        call("upstream-400-straddle", CONFIG_KEY)
        # Mid-stream error events quoting the key as no byte search of what was sent finds
        # it: every character a JSON escape, and a run from its middle alone.
        escaped = "".join(f"\\u{ord(c):04x}" for c in PROVIDER_KEY)
        middle = PROVIDER_KEY[len(PROVIDER_KEY) // 2 - 8:len(PROVIDER_KEY) // 2 + 8]
        for name, quote in (("escaped", escaped), ("middle", middle)):
            upstream.script(Behaviour(raw_event_after_chunks=(1, (
                '{"error": {"message": "generation failed for key ' + quote + '", "type": '
                '"server_error", "param": "' + quote + '", "code": null}}').encode())))
            request_id = f"sec-stream-{name}"
            result.request_ids.append(request_id)
            result.stream_bodies[name] = httpx.post(
                gateway.url + CHAT, json=chat_body(stream=True),
                headers=auth(CONFIG_KEY, request_id), timeout=10).text
        models = httpx.get(gateway.url + "/v1/models", headers=auth(STRANGER_KEY), timeout=10)
        result.error_bodies["models"] = models.text
        wait_for_rows(gateway.db_path, result.request_ids, columns="request_id")
        deadline = time.monotonic() + 5  # the request log line follows the row
        while "sec-upstream-401" not in gateway.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield result
    finally:
        gateway.kill()


# -- secrets -----------------------------------------------------------------------------------

def test_no_secret_appears_in_the_log_at_debug_level(secured):
    log = secured.gateway.stderr()
    assert "sec-upstream-401" in log, "the log has the lines it must not leak from"
    assert secured.leaks(log.encode()) == []


def test_no_secret_appears_in_the_database_or_its_wal(secured):
    data = database_bytes(secured.gateway.db_path)
    assert b"sec-upstream-401" in data, "the records are there"
    assert secured.leaks(data) == []


def test_no_secret_appears_in_an_error_body(secured):
    assert {"near-miss", "stranger", "upstream-401", "models"} <= set(secured.error_bodies)
    for name, body in secured.error_bodies.items():
        assert is_openai_error(orjson.loads(body)), name
        assert secured.leaks(body.encode()) == [], name


def test_no_secret_appears_in_a_stream_whose_error_event_quotes_it_escaped_or_in_part(secured):
    assert set(secured.stream_bodies) == {"escaped", "middle"}
    for name, body in secured.stream_bodies.items():
        events = sse_data(body)
        assert events[-1] == "[DONE]", name
        # As a client reads it: JSON decoded, so an escaped quote of the key is the key.
        decoded = b"".join(orjson.dumps(orjson.loads(e)) for e in events[:-1])
        assert b'"error"' in decoded, name
        assert secured.leaks(decoded) == [], name
    rows = wait_for_rows(secured.gateway.db_path, ["sec-stream-escaped", "sec-stream-middle"],
                         columns="request_id, status, error_message")
    for request_id in ("sec-stream-escaped", "sec-stream-middle"):
        (row,) = rows[request_id]
        assert row["status"] == "failed" and "generation failed" in row["error_message"]
        assert secured.leaks(row["error_message"].encode()) == [], request_id


def test_no_secret_appears_in_metrics(secured):
    response = httpx.get(secured.gateway.url + "/metrics",
                         headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    if response.status_code == 404:
        pytest.skip("GET /metrics does not exist in this build")
    assert response.status_code == 200
    assert secured.leaks(response.content) == []


def test_upstream_401_quoting_the_provider_key_becomes_upstream_auth_failed(secured):
    error = orjson.loads(secured.error_bodies["upstream-401"])["error"]
    assert error["code"] == "upstream_auth_failed"


FORGED = "2026-01-01T00:00:00.000Z INFO circuit.requests request_id=forged key=admin"


def test_a_client_cannot_forge_log_lines_through_the_model_name(secured, request):
    response = httpx.post(secured.gateway.url + CHAT,
                          json=chat_body(model=f"gpt-4o-mini\n{FORGED}\x1b[2J"),
                          headers=auth(CONFIG_KEY, "sec-forge"), timeout=10)
    # No such model has a price, so the budgeted key is refused: logged all the same.
    assert response.status_code == 403
    wait_for_rows(secured.gateway.db_path, ["sec-forge"])
    deadline = time.monotonic() + 3
    while "sec-forge" not in secured.gateway.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = secured.gateway.stderr().splitlines()
    assert any("sec-forge" in line for line in lines)
    assert not any(line.startswith(FORGED) for line in lines), "a forged line"
    assert not any("\x1b" in line for line in lines), "a raw terminal escape"


# -- keys --------------------------------------------------------------------------------------

def test_a_wrong_key_of_the_same_length_and_prefix_is_refused(secured):
    # Lookups are by SHA-256 of the key, compared with hmac.compare_digest: a near miss is as
    # wrong as any other key. Timing is deliberately not measured here (too noisy to assert).
    assert len(NEAR_MISS_KEY) == len(CONFIG_KEY) and NEAR_MISS_KEY[:-1] == CONFIG_KEY[:-1]
    error = orjson.loads(secured.error_bodies["near-miss"])["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
    rows = wait_for_rows(secured.gateway.db_path, ["sec-near-miss"])["sec-near-miss"]
    assert [(r["status"], r["status_code"], r["key_name"]) for r in rows] == [
        ("rejected", 401, None)]


def test_metrics_refuse_a_wrong_token(secured):
    response = httpx.get(secured.gateway.url + "/metrics",
                         headers={"Authorization": f"Bearer {METRICS_TOKEN[:-1]}x"}, timeout=10)
    if response.status_code == 404:
        pytest.skip("GET /metrics does not exist in this build")
    assert response.status_code == 401 and is_openai_error(response.json())


# -- limits ------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    pytest.param(b"X-Big: " + b"a" * (1 << 20) + b"\r\n", id="one_header_of_a_megabyte"),
    pytest.param(b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)), id="ten_thousand_headers"),
])
def test_oversized_request_headers_are_refused(secured, headers):
    answer = raw_exchange(secured.gateway.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n" + headers
                         + b"Connection: close\r\n\r\n")
    assert TRACEBACK.encode() not in answer
    assert answer == b"" or answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400",
                                               b"HTTP/1.1 413"))


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_body_over_the_limit_is_refused_and_never_reaches_the_upstream(
        openai_gateway, upstream, chunked, request_id):
    limit = openai_gateway.settings.max_body_bytes
    body = orjson.dumps(chat_body(messages=[{"role": "user", "content": "x" * limit}]))
    content = iter([body[i:i + 8192] for i in range(0, len(body), 8192)]) if chunked else body
    response = httpx.post(openai_gateway.url + CHAT, content=content,
                          headers=auth(request_id=request_id), timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert upstream.calls == 0


@pytest.mark.parametrize("status", [400, 429, 500])
def test_an_upstream_error_quoting_the_provider_key_does_not_pass_it_on(
        openai_gateway, upstream, status, request_id):
    upstream.script(Behaviour(
        status=status, error_message=f"Request failed for key {GATEWAY_PROVIDER_KEY}"))
    response = httpx.post(openai_gateway.url + CHAT, json=chat_body(),
                          headers=auth(request_id=request_id), timeout=10)
    row = openai_gateway.record(request_id)
    assert GATEWAY_PROVIDER_KEY not in response.text
    assert GATEWAY_PROVIDER_KEY not in (row["error_message"] or "")
