"""Tests OF the fake OpenAI upstream, so the gateway's tests can trust it.

The well-behaved paths go through the official ``openai`` SDK (if the SDK parses it, the
wire format is right); the misbehaviours are checked on the raw bytes with httpx.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest
from aiohttp import web

from tests.fakes.openai_upstream import (
    REPLY_SUFFIX,
    Behaviour,
    FakeOpenAI,
    count_prompt_tokens,
)
from tests.fakes.server_thread import ServerThread

MODEL = "gpt-4o-mini"
USER = [{"role": "user", "content": "hello there world"}]
# "Echo: hello there world. This is a deterministic reply from the fake upstream."
DEFAULT_REPLY = f"Echo: hello there world. {REPLY_SUFFIX}"
DEFAULT_WORDS = DEFAULT_REPLY.split()  # 13 words
PROMPT_TOKENS = 3 + 3 * 1 + 3  # words + 3 per message + 3


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=fake.base_url, api_key="sk-provider-key", max_retries=0, timeout=5)
    yield c
    c.close()


def raw_stream_events(fake: FakeOpenAI, body: dict, **kw) -> tuple[httpx.Response, list[bytes]]:
    """POST a streaming request with httpx and return (response, SSE data payloads)."""
    payload = {"model": MODEL, "messages": USER, "stream": True, **body}
    with httpx.stream(
        "POST",
        fake.base_url + "/chat/completions",
        json=payload,
        headers={"Authorization": "Bearer sk-raw"},
        timeout=5,
        **kw,
    ) as resp:
        raw = resp.read()
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events), events
    return resp, [e[len(b"data: ") :] for e in events]


# ---------------------------------------------------------------------- happy paths (SDK)


def test_sdk_json_completion_has_reply_model_and_usage(fake, client):
    r = client.chat.completions.create(model=MODEL, messages=USER)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == MODEL
    assert r.system_fingerprint
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == DEFAULT_REPLY
    assert choice.message.refusal is None
    assert choice.logprobs is None
    assert choice.finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.prompt_tokens == PROMPT_TOKENS
    assert r.usage.completion_tokens == len(DEFAULT_WORDS)
    assert r.usage.total_tokens == PROMPT_TOKENS + len(DEFAULT_WORDS)
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details.reasoning_tokens == 0


def test_sdk_json_completion_echoes_requested_model(fake, client):
    r = client.chat.completions.create(model="some-other-model", messages=USER)
    assert r.model == "some-other-model"


def test_reply_depends_on_last_user_message_truncated_to_40_chars(fake, client):
    long = "x" * 100
    messages = [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": long},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages)
    assert r.choices[0].message.content == f"Echo: {'x' * 40}. {REPLY_SUFFIX}"
    assert r.usage.prompt_tokens == count_prompt_tokens(messages) == 5 + 3 * 4 + 3


def test_sdk_stream_yields_words_and_final_usage_with_include_usage(fake, client):
    stream = client.chat.completions.create(
        model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    contents = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert contents == [DEFAULT_WORDS[0]] + [" " + w for w in DEFAULT_WORDS[1:]]
    assert "".join(contents) == DEFAULT_REPLY
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.choices == []
    assert final.usage.prompt_tokens == PROMPT_TOKENS
    assert final.usage.completion_tokens == len(DEFAULT_WORDS)
    assert final.usage.total_tokens == PROMPT_TOKENS + len(DEFAULT_WORDS)


def test_sdk_stream_without_include_usage_has_no_usage_chunk(fake, client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert all(c.choices for c in chunks)  # no choices=[] usage chunk
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    _, events = raw_stream_events(fake, {})
    assert events[-1] == b"[DONE]"
    assert all(b'"usage"' not in e for e in events)  # key absent, not just null


def test_raw_stream_wire_format_with_include_usage(fake):
    resp, events = raw_stream_events(fake, {"stream_options": {"include_usage": True}})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    # role chunk, one per word, finish chunk, usage chunk
    assert len(chunks) == 1 + len(DEFAULT_WORDS) + 1 + 1
    assert chunks[0]["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert chunks[1]["choices"][0]["delta"] == {"content": DEFAULT_WORDS[0]}
    assert chunks[2]["choices"][0]["delta"] == {"content": " " + DEFAULT_WORDS[1]}
    assert chunks[-2]["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    for c in chunks[:-1]:
        assert c["usage"] is None  # present and null on every non-final chunk
        assert c["object"] == "chat.completion.chunk"
        assert c["model"] == MODEL
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(DEFAULT_WORDS)


# ---------------------------------------------------------------------- max_tokens


def test_max_tokens_truncates_with_finish_reason_length(fake, client):
    r = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=4)
    assert r.choices[0].message.content == " ".join(DEFAULT_WORDS[:4])
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 4


def test_max_completion_tokens_truncates_stream_with_finish_reason_length(fake, client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=2,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(DEFAULT_WORDS[:2])
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 2


def test_max_tokens_not_reached_finishes_with_stop(fake, client):
    r = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=len(DEFAULT_WORDS))
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == DEFAULT_REPLY


def test_reply_override(fake, client):
    fake.script(Behaviour(reply="one two three"))
    r = client.chat.completions.create(model=MODEL, messages=USER)
    assert r.choices[0].message.content == "one two three"
    assert r.usage.completion_tokens == 3


# ---------------------------------------------------------------------- errors


def test_status_500_raises_internal_server_error_with_openai_error_shape(fake, client):
    fake.script(Behaviour(status=500))
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert ei.value.status_code == 500
    err = ei.value.response.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}
    assert err["type"] == "server_error"
    assert err["message"]


def test_status_429_with_retry_after_raises_rate_limit_error(fake, client):
    fake.script(Behaviour(status=429, retry_after="7", error_type="rate_limit_exceeded"))
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert ei.value.response.headers["retry-after"] == "7"
    assert ei.value.type == "rate_limit_exceeded"
    assert ei.value.code == "rate_limit_exceeded"


def test_error_status_applies_to_streaming_requests_too(fake, client):
    fake.script(Behaviour(status=503))
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    assert ei.value.status_code == 503


def test_missing_authorization_is_401_in_openai_shape(fake):
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}):
        r = httpx.post(
            fake.base_url + "/chat/completions",
            json={"model": MODEL, "messages": USER},
            headers=headers,
        )
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}
    assert all(rec.api_key is None for rec in fake.received)


def test_script_not_consumed_by_unauthorized_request(fake, client):
    fake.script(Behaviour(status=500))
    httpx.post(fake.base_url + "/chat/completions", json={"model": MODEL, "messages": USER})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=USER)


# ---------------------------------------------------------------------- timing misbehaviours


def test_hang_triggers_client_timeout(fake, client):
    fake.script(Behaviour(hang=2.0))
    with pytest.raises(openai.APITimeoutError):  # not the fake's answer, 2 s later
        client.with_options(timeout=0.2).chat.completions.create(model=MODEL, messages=USER)
    # The client hung up while the fake was still hanging: counted as a client disconnect.
    assert fake.wait_for(lambda: fake.connections_closed_by_client == 1)


def test_first_chunk_delay_sends_headers_then_waits(fake):
    fake.script(Behaviour(first_chunk_delay=0.3))
    payload = {"model": MODEL, "messages": USER, "stream": True}
    t0 = time.monotonic()
    with httpx.stream(
        "POST",
        fake.base_url + "/chat/completions",
        json=payload,
        headers={"Authorization": "Bearer k"},
    ) as resp:
        t_headers = time.monotonic() - t0
        next(resp.iter_bytes())
        t_first = time.monotonic() - t0
    # Headers arrive immediately; the body waits (if aiohttp held the headers back until the
    # first write, both times would be ~equal).
    assert t_first - t_headers >= 0.2
    assert t_first >= 0.3


def test_chunk_delay_spaces_out_events(fake):
    fake.script(Behaviour(chunk_delay=0.02, reply="a b c"))
    t0 = time.monotonic()
    _, events = raw_stream_events(fake, {})
    # role + 3 words + finish + [DONE] = 6 events, 5 gaps
    assert len(events) == 6
    assert time.monotonic() - t0 >= 5 * 0.02


# ---------------------------------------------------------------------- broken streams


def test_drop_after_chunks_sdk_gets_exactly_n_content_chunks_then_error(fake, client):
    fake.script(Behaviour(drop_after_chunks=3))
    contents = []
    with pytest.raises(openai.APIConnectionError):
        for c in client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
        ):
            if c.choices and c.choices[0].delta.content:
                contents.append(c.choices[0].delta.content)
            assert c.usage is None
    assert contents == [DEFAULT_WORDS[0], " " + DEFAULT_WORDS[1], " " + DEFAULT_WORDS[2]]


def test_drop_after_chunks_raw_httpx_sees_incomplete_chunked_body(fake):
    fake.script(Behaviour(drop_after_chunks=2))
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
        httpx.stream(
            "POST",
            fake.base_url + "/chat/completions",
            json={"model": MODEL, "messages": USER, "stream": True},
            headers={"Authorization": "Bearer k"},
        ) as resp,
    ):
        for part in resp.iter_raw():
            received += part
    events = [e for e in received.split(b"\n\n") if e]
    assert len(events) == 3  # role chunk + 2 content chunks
    assert b"[DONE]" not in received
    assert b'finish_reason":"stop' not in received
    # We dropped it; the client didn't go away.
    assert fake.connections_closed_by_client == 0


def test_drop_after_chunks_zero_sends_only_role_chunk(fake):
    fake.script(Behaviour(drop_after_chunks=0))
    with pytest.raises(httpx.RemoteProtocolError):
        raw_stream_events(fake, {})


def test_send_usage_false_omits_usage_even_with_include_usage(fake, client):
    fake.script(Behaviour(send_usage=False), Behaviour(send_usage=False))
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)
    r = client.chat.completions.create(model=MODEL, messages=USER)
    assert r.usage is None


def test_malformed_sse_emits_invalid_json_event_midway(fake):
    fake.script(Behaviour(malformed_sse=True))
    resp, events = raw_stream_events(fake, {})
    bad = []
    for i, e in enumerate(events):
        if e == b"[DONE]":
            continue
        try:
            orjson.loads(e)
        except orjson.JSONDecodeError:
            bad.append(i)
    assert len(bad) == 1
    assert 1 < bad[0] < len(events) - 2  # midway, after some words
    assert events[-1] == b"[DONE]"


def test_client_disconnect_mid_stream_is_counted(fake):
    fake.script(Behaviour(chunk_delay=0.05))
    with httpx.stream(
        "POST",
        fake.base_url + "/chat/completions",
        json={"model": MODEL, "messages": USER, "stream": True},
        headers={"Authorization": "Bearer k"},
    ) as resp:
        next(resp.iter_bytes())  # read the first event, then hang up
    assert fake.wait_for(lambda: fake.connections_closed_by_client == 1)


def test_complete_stream_is_not_counted_as_client_disconnect(fake, client):
    list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    client.chat.completions.create(model=MODEL, messages=USER)
    time.sleep(0.05)
    assert fake.connections_closed_by_client == 0


# ---------------------------------------------------------------------- bookkeeping


def test_script_consumed_one_per_request_in_order_then_default(fake, client):
    fake.script(Behaviour(status=500), Behaviour(reply="second"), Behaviour(status=429))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=USER)
    second = client.chat.completions.create(model=MODEL, messages=USER)
    assert second.choices[0].message.content == "second"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=USER)
    assert fake.pending == 0
    fake.default = Behaviour(reply="from default")
    for _ in range(2):
        r = client.chat.completions.create(model=MODEL, messages=USER)
        assert r.choices[0].message.content == "from default"
    assert fake.calls == 5


def test_received_records_body_raw_headers_and_api_key(fake, client):
    client.chat.completions.create(model=MODEL, messages=USER, max_tokens=5, user="u-1")
    assert fake.calls == 1
    rec = fake.received[0]
    assert rec.body == {"model": MODEL, "messages": USER, "max_tokens": 5, "user": "u-1"}
    assert orjson.loads(rec.raw) == rec.body
    assert rec.headers["authorization"] == "Bearer sk-provider-key"
    assert rec.authorization == "Bearer sk-provider-key"
    assert rec.api_key == "sk-provider-key"
    assert rec.headers["content-type"] == "application/json"
    assert all(k == k.lower() for k in rec.headers)


def test_reset_clears_queue_received_counters_and_default(fake, client):
    fake.default = Behaviour(reply="custom")
    client.chat.completions.create(model=MODEL, messages=USER)
    fake.script(Behaviour(status=500))
    httpx.post(fake.base_url + "/chat/completions", json={}, headers={"Authorization": "Bearer k"})
    fake.reset()
    assert (fake.calls, fake.received, fake.pending, fake.connections_closed_by_client) == (
        0,
        [],
        0,
        0,
    )
    assert fake.default == Behaviour()
    after = client.chat.completions.create(model=MODEL, messages=USER)
    assert after.choices[0].message.content == DEFAULT_REPLY


def test_models_endpoint_lists_models_via_sdk(fake, client):
    ids = [m.id for m in client.models.list()]
    assert ids == fake.models
    assert MODEL in ids


def test_invalid_json_body_is_400(fake):
    r = httpx.post(
        fake.base_url + "/chat/completions",
        content=b"{not json",
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert fake.received[0].body is None
    assert fake.received[0].raw == b"{not json"


# ---------------------------------------------------------------------- ServerThread


def test_server_thread_serves_on_free_port_and_stops_cleanly():
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    server = ServerThread(app)
    with server:
        assert server.port != 0
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/").text == "hi"
        url = server.url
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/")
    server.stop()  # idempotent


def test_two_fakes_get_different_ports():
    with FakeOpenAI() as a, FakeOpenAI() as b:
        assert a.base_url != b.base_url
        assert a.base_url.endswith("/v1")
