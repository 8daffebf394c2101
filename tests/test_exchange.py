"""The exchange, the stream tally and the relay, driven without HTTP: a real Gateway (SQLite
store, record writer, budget ledger, buckets, breakers) is given ASGI requests directly.

After each path — a JSON answer, a stream that ends well, one cut by its upstream, one whose
client leaves, one without usage, and a refusal at each admission step — every grant is settled
exactly once: the budget held and the tokens borrowed are back to zero (a second settlement
would take them below it), the breaker was told the call's outcome once, and there is one
record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from circuit.config import load_settings
from circuit.errors import StreamBroken
from circuit.gateway.flow import ChatFlow
from circuit.gateway.runtime import Gateway
from circuit.keys import create_key
from circuit.store.sqlite import SQLiteStore
from circuit.wire import Call, Completion, StreamEvent, Usage

KEY = "sk-exchange-test-key-0123456789"
NAME = "config-1"


def _settings(tmp: Path, **env: str):
    environ = {"CIRCUIT_DB_PATH": str(tmp / "circuit.db"), "CIRCUIT_API_KEYS": KEY,
               "CIRCUIT_LOG_LEVEL": "warning", "CIRCUIT_DEFAULT_TPM": "100000",
               "CIRCUIT_DEFAULT_RPM": "1000", "CIRCUIT_DAILY_USD_LIMIT": "1", **env}
    return load_settings(environ=environ, cwd=tmp)


@asynccontextmanager
async def running(tmp: Path, **env: str) -> AsyncIterator[Gateway]:
    gateway = Gateway(_settings(tmp, **env))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


class Scripted:
    """A provider whose stream is a list of reads (each a list of StreamEvents or an error)."""

    name = "mock"
    wire = "chat"
    reports_stream_usage = True

    def __init__(self, reads: list, hang: bool = False) -> None:
        self.reads = reads
        self.hang = hang
        self.closed = False

    def takes(self, body: dict) -> None:
        """Any chat body (the provider contract's check before a call)."""

    async def open_stream(self, call: Call) -> Scripted:
        return self

    async def complete(self, call: Call) -> Completion:
        raise AssertionError("streams only")

    def __aiter__(self) -> Scripted:
        return self

    async def __anext__(self) -> list[StreamEvent]:
        if not self.reads:
            if self.hang:
                await asyncio.Event().wait()
            raise StopAsyncIteration
        read = self.reads.pop(0)
        if isinstance(read, Exception):
            raise read
        return read

    async def aclose(self) -> None:
        self.closed = True


def _chunk(text: str) -> StreamEvent:
    return StreamEvent(orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}),
                       text=text, outputs=1)


USAGE = StreamEvent(b'{"choices": [], "usage": {}}', relay=False,
                    usage=Usage(input_tokens=12, output_tokens=2))


async def _call(gateway: Gateway, body: dict, *, key: str = KEY,
                disconnect: asyncio.Event | None = None) -> tuple[int, list[bytes]]:
    """One request through the endpoint: (status, body parts sent)."""
    raw = orjson.dumps(body)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", f"Bearer {key}".encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode())],
             "query_string": b"", "scheme": "http", "server": ("test", 80),
             "client": ("test", 1), "root_path": ""}
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        if disconnect is not None:
            await disconnect.wait()
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # the client stays
        return {}

    sent: list[bytes] = []
    status = 0

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            sent.append(message.get("body", b""))
            if disconnect is not None and len(sent) == 1:
                disconnect.set()  # the client leaves after the first part

    response = await ChatFlow(gateway)(_request(scope, receive))
    await response(scope, receive, send)
    return status, sent


def _request(scope, receive):
    from starlette.requests import Request

    return Request(scope, receive)


async def _settled(gateway: Gateway, records: int) -> list[dict]:
    """The gateway's records once `records` are written; every grant back to zero by then."""
    for _ in range(500):
        rows = await asyncio.to_thread(_rows, gateway)
        if len(rows) >= records and gateway.ledger.held(NAME) == 0 and \
                gateway.limiter.outstanding(NAME) == 0:
            return rows
        await asyncio.sleep(0.01)
    raise AssertionError(f"not settled: {gateway.ledger.held(NAME)} micro-dollars held, "
                         f"{gateway.limiter.outstanding(NAME)} tokens borrowed, "
                         f"{len(await asyncio.to_thread(_rows, gateway))} records")


def _rows(gateway: Gateway) -> list[dict]:
    store = SQLiteStore(gateway.settings.db_path)
    try:
        return store.recent_requests(100) if store.exists() else []
    finally:
        store.close()


def _breaker(gateway: Gateway) -> tuple[int, int]:
    return gateway.breakers["mock"].failures_in_window()


BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10}


def _scenario(tmp_path, run: Callable, **env: str):
    async def main():
        async with running(tmp_path, **env) as gateway:
            await run(gateway)

    asyncio.run(main())


def test_a_json_answer_settles_its_grants_once_and_tells_the_breaker_a_success(tmp_path):
    async def run(gateway):
        status, _ = await _call(gateway, BODY)
        assert status == 200
        (row,) = await _settled(gateway, 1)
        assert row["status"] == "ok" and row["cost_micros"] > 0
        assert _breaker(gateway) == (1, 0)
        assert gateway.in_flight == 0

    _scenario(tmp_path, run)


def test_a_stream_that_ends_well_settles_once(tmp_path):
    async def run(gateway):
        gateway.router.default = Scripted([[_chunk("Hello")], [_chunk(" world"), USAGE]])
        status, sent = await _call(gateway, {**BODY, "stream": True})
        assert status == 200 and sent[-1] == b"data: [DONE]\n\n"
        (row,) = await _settled(gateway, 1)
        assert (row["status"], row["tokens_output"], row["usage_source"]) == ("ok", 2,
                                                                               "provider")
        assert _breaker(gateway) == (1, 0)
        assert gateway.open_streams == 0 and gateway.in_flight == 0

    _scenario(tmp_path, run)


def test_a_stream_cut_by_its_upstream_settles_once_and_counts_a_failure(tmp_path):
    async def run(gateway):
        broken = StreamBroken("mock stream broke: the upstream closed the connection")
        gateway.router.default = Scripted([[_chunk("Hel")], broken])
        status, sent = await _call(gateway, {**BODY, "stream": True})
        assert status == 200 and b"upstream_stream_broken" in sent[-1]
        (row,) = await _settled(gateway, 1)
        assert (row["status"], row["partial_text"]) == ("failed", "Hel")
        assert row["usage_source"] == "local", "counted on the writer thread, then settled"
        assert _breaker(gateway) == (1, 1)

    _scenario(tmp_path, run)


def test_a_client_that_leaves_mid_stream_settles_once_and_blames_nobody(tmp_path):
    async def run(gateway):
        upstream = Scripted([[_chunk("Hello")]], hang=True)
        gateway.router.default = upstream
        status, _ = await _call(gateway, {**BODY, "stream": True}, disconnect=asyncio.Event())
        assert status == 200
        (row,) = await _settled(gateway, 1)
        assert row["status"] == "client_disconnected" and row["partial_text"] == "Hello"
        assert upstream.closed, "the upstream call is dropped"
        assert _breaker(gateway) == (0, 0), "abandoned: not a call of the provider's"

    _scenario(tmp_path, run)


def test_a_stream_without_usage_is_counted_on_the_writer_thread_and_settled_once(tmp_path):
    async def run(gateway):
        gateway.router.default = Scripted([[_chunk("Hello"), _chunk(" there")]])
        status, _ = await _call(gateway, {**BODY, "stream": True})
        assert status == 200
        (row,) = await _settled(gateway, 1)
        assert (row["usage_source"], row["tokens_output"]) == ("local", 2)

    _scenario(tmp_path, run)


@pytest.mark.parametrize(("how", "env", "body", "code"), [
    ("auth", {}, BODY, "invalid_api_key"),
    ("rate limit", {"CIRCUIT_DEFAULT_TPM": "5"}, BODY, "rate_limit_exceeded"),
    ("budget", {"CIRCUIT_DAILY_USD_LIMIT": "0.000001"}, BODY, "quota_exceeded"),
    ("price", {}, {**BODY, "model": "ft:gpt-4o-mini:acme::x"}, "model_not_priced"),
])
def test_a_refusal_at_each_admission_step_leaves_nothing_held(tmp_path, how, env, body, code):
    if how == "price":
        # The mock is free (it serves unpriced models to budgets); one declared not free is not.
        (tmp_path / "circuit.toml").write_text(
            'provider = "mock"\n[providers.mock]\nkind = "mock"\nfree = false\n')

    async def run(gateway):
        key = "sk-someone-else-entirely-0000" if how == "auth" else KEY
        status, sent = await _call(gateway, body, key=key)
        assert orjson.loads(b"".join(sent))["error"]["code"] == code
        (row,) = await _settled(gateway, 1)
        assert (row["status"], row["error_code"]) == ("rejected", code)
        assert _breaker(gateway) == (0, 0), "no call was made"

    _scenario(tmp_path, run, **env)


def test_a_refusal_by_an_open_breaker_leaves_nothing_held(tmp_path):
    async def run(gateway):
        gateway.breakers["mock"].force_open()
        status, sent = await _call(gateway, BODY)
        assert status == 503
        (row,) = await _settled(gateway, 1)
        assert row["error_code"] == "service_unavailable"

    _scenario(tmp_path, run)


def test_a_key_from_the_table_is_settled_under_its_own_name(tmp_path):
    async def run(gateway):
        store = SQLiteStore(gateway.settings.db_path)
        secret = create_key(store, "team", daily_limit_usd=1)
        store.close()
        await gateway.control.refresh_keys()
        status, _ = await _call(gateway, BODY, key=secret)
        assert status == 200
        for _ in range(200):
            if gateway.ledger.held("team") == 0 and _rows(gateway):
                break
            await asyncio.sleep(0.01)
        assert gateway.ledger.held("team") == 0

    _scenario(tmp_path, run)
