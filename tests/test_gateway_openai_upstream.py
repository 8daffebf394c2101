"""The gateway in front of an OpenAI-compatible upstream that behaves, and misbehaves, over HTTP."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY, GatewayServer
from tests.support.raw_http import chat_request, connect

HELLO = [{"role": "user", "content": "Hello from the test"}]


def _post(gateway, body: dict, request_id: str, **kwargs) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", content=orjson.dumps(body),
                      headers={"Authorization": f"Bearer {CLIENT_KEY}",
                               "Content-Type": "application/json",
                               "x-request-id": request_id}, timeout=10, **kwargs)


def _sse_events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


# -- behaving upstream -------------------------------------------------------------------------

def test_json_completion_is_relayed_and_recorded_with_provider_usage(openai_gateway, upstream,
                                                                     request_id):
    completion = openai_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, extra_headers={"x-request-id": request_id})
    assert completion.choices[0].message.content.startswith("Echo: Hello from the test")
    row = openai_gateway.record(request_id)
    assert (row["tokens_input"], row["tokens_output"]) == (
        completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert row["usage_source"] == "provider" and row["provider"] == "openai"
    assert (row["api"], row["upstream_api"]) == ("chat", "chat")
    assert row["status"] == "ok" and row["cost_usd"] > 0


def test_stream_is_relayed_chunk_by_chunk_and_settled_from_provider_usage(openai_gateway,
                                                                          upstream, request_id):
    chunks = list(openai_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True,
        extra_headers={"x-request-id": request_id}))
    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert " ".join(w.strip() for w in words).startswith("Echo: Hello from the test")
    assert all(not c.usage for c in chunks), "the usage chunk the gateway asked for is hidden"
    assert upstream.last.body["stream_options"] == {"include_usage": True}
    row = openai_gateway.record(request_id)
    assert row["usage_source"] == "provider" and row["tokens_output"] == len(words)


def test_request_body_reaches_upstream_as_sent_with_unknown_fields(openai_gateway, upstream,
                                                                   request_id):
    body = {"model": "gpt-4o-mini", "messages": HELLO, "temperature": 0.25,
            "x_vendor_field": {"nested": [1, 2.5, "three"]}}
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    response = httpx.post(openai_gateway.url + "/v1/chat/completions", content=raw,
                          headers={"Authorization": f"Bearer {CLIENT_KEY}",
                                   "x-request-id": request_id})
    assert response.status_code == 200
    assert upstream.last.raw == raw, "nothing had to change, so the bytes are forwarded as is"


def test_upstream_response_fields_unknown_to_the_gateway_reach_the_client(openai_gateway,
                                                                          upstream, request_id):
    upstream.script(Behaviour(headers={"x-upstream-note": "kept"}))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO}, request_id)
    assert response.json()["system_fingerprint"]  # a field the gateway never reads
    assert response.json()["choices"][0]["message"]["refusal"] is None


def test_provider_key_goes_upstream_never_the_client_key(openai_gateway, upstream, request_id):
    _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO}, request_id)
    assert upstream.last.api_key == PROVIDER_KEY
    assert CLIENT_KEY.encode() not in openai_gateway.db_path.read_bytes()


def test_stream_without_upstream_usage_is_counted_locally(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(send_usage=False, reply="one two three four five"))
    list(openai_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True,
        extra_headers={"x-request-id": request_id}))
    row = openai_gateway.record(request_id)
    counter = openai_gateway.gateway.meter.counter
    assert row["usage_source"] == "local" and row["status"] == "ok"
    assert row["tokens_output"] == counter.count_text("gpt-4o-mini", "one two three four five")
    assert row["tokens_input"] == counter.count_messages("gpt-4o-mini", HELLO)
    assert row["cost_usd"] > 0


def test_json_without_upstream_usage_is_counted_locally(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(send_usage=False, reply="alpha beta"))
    openai_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, extra_headers={"x-request-id": request_id})
    row = openai_gateway.record(request_id)
    assert row["usage_source"] == "local"
    assert row["tokens_output"] == openai_gateway.gateway.meter.counter.count_text("gpt-4o-mini",
                                                                             "alpha beta")


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_content_without_usage_is_counted_as_output(openai_gateway, upstream,
                                                              request_id, stream):
    # DeepSeek's and vLLM's reasoning text is output the upstream bills: counted with the
    # answer when the upstream reports no usage (the chat door relays it unchanged).
    upstream.script(Behaviour(send_usage=False, reasoning="think it over", reply="one two"))
    answer = openai_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=stream,
        extra_headers={"x-request-id": request_id})
    if stream:
        assert "".join(chunk.choices[0].delta.model_extra.get("reasoning_content") or ""
                       for chunk in answer if chunk.choices) == "think it over"
    else:
        assert answer.choices[0].message.model_extra["reasoning_content"] == "think it over"
    row = openai_gateway.record(request_id)
    assert row["usage_source"] == "local"
    assert row["tokens_output"] == openai_gateway.gateway.meter.counter.count_text(
        "gpt-4o-mini", "think it over" + "one two")


def test_unpriced_model_is_refused_for_a_budgeted_key_and_recorded(openai_gateway, upstream,
                                                                   request_id):
    # This gateway's key has the default $10 limit; what an unlimited key gets is in
    # tests/test_budget_ceiling.py.
    response = _post(openai_gateway, {"model": "my-local-llama", "messages": HELLO}, request_id)
    assert response.status_code == 403
    row = openai_gateway.record(request_id)
    assert (row["status"], row["error_code"]) == ("rejected", "model_not_priced")
    assert row["cost_usd"] is None and row["cost_micros"] is None


# -- misbehaving upstream ----------------------------------------------------------------------

def test_upstream_500_becomes_502_in_openai_shape(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(status=500))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO}, request_id)
    assert response.status_code == 502
    assert set(response.json()["error"]) >= {"message", "type", "code"}
    assert response.headers["x-request-id"] == request_id
    row = openai_gateway.record(request_id)
    assert (row["status"], row["status_code"], row["error_code"]) == (
        "failed", 502, "upstream_server_error")


def test_upstream_429_is_passed_on_with_retry_after(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(status=429, retry_after="7"))
    with pytest.raises(openai.RateLimitError) as caught:
        openai_gateway.client().chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, extra_headers={"x-request-id": request_id})
    assert caught.value.response.headers["retry-after"] == "7"
    assert openai_gateway.record(request_id)["status_code"] == 429


def test_upstream_400_is_passed_on_with_its_message(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(status=400, error_message="Invalid value for 'temperature'."))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO}, request_id)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid value for 'temperature'."


def test_upstream_404_is_passed_on(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(status=404, error_message="The model does not exist."))
    response = _post(openai_gateway, {"model": "gpt-4o-2099-01-01", "messages": HELLO}, request_id)
    assert response.status_code == 404 and response.json()["error"]["type"]


def test_upstream_401_is_a_502_that_hides_the_upstream_message(openai_gateway, upstream,
                                                               request_id):
    upstream.script(Behaviour(status=401, error_message=f"Incorrect API key: {PROVIDER_KEY}"))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO}, request_id)
    assert response.status_code == 502
    assert PROVIDER_KEY not in response.text
    assert response.json()["error"]["code"] == "upstream_auth_failed"


def test_upstream_that_hangs_gets_504_after_the_first_byte_timeout(openai_gateway, upstream,
                                                                   request_id):
    # The upstream would answer after 3 s; the gateway's 1 s timeout answers first (had the
    # upstream's answer come first, this would be a 200).
    upstream.script(Behaviour(hang=3.0))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO}, request_id)
    assert response.status_code == 504
    assert openai_gateway.record(request_id)["error_code"] == "upstream_timeout"


def test_unreachable_upstream_is_a_502(tmp_path, request_id):
    from tests.support.gateway_server import GatewayServer

    gateway = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_API_KEY="sk-x",
                            OPENAI_BASE_URL="http://127.0.0.1:9/v1").start()
    try:
        response = _post(gateway, {"model": "gpt-4o-mini", "messages": HELLO}, request_id)
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unreachable"
        assert gateway.record(request_id)["status"] == "failed"
    finally:
        gateway.stop()


def test_stream_dropped_midway_ends_with_an_error_event_and_records_the_partial_text(
        openai_gateway, upstream, request_id):
    upstream.script(Behaviour(drop_after_chunks=3, reply="alpha beta gamma delta epsilon"))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO,
                                      "stream": True}, request_id)
    events = _sse_events(response.text)
    assert response.status_code == 200
    error = orjson.loads(events[-2])["error"]
    assert set(error) == {"message", "type", "code"}
    # In words, not the HTTP client's class names.
    assert "Error" not in error["message"] and "stream broke: the " in error["message"]
    assert events[-1] == "[DONE]", "a clean end of stream, no hang"
    row = openai_gateway.record(request_id)
    assert row["status"] == "failed" and row["error_code"] == "upstream_stream_broken"
    assert row["partial_text"] == "alpha beta gamma"
    assert row["usage_source"] == "local" and row["tokens_output"] == 3
    assert row["cost_usd"] > 0, "what the broken stream used is charged"


def test_sdk_sees_a_dropped_stream_as_an_error(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(drop_after_chunks=2))
    stream = openai_gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True,
        extra_headers={"x-request-id": request_id})
    with pytest.raises(openai.APIError):
        list(stream)


def test_stream_idle_past_the_timeout_ends_with_an_error_event(openai_gateway, upstream,
                                                               request_id):
    upstream.script(Behaviour(chunk_delay=0.8, reply="slow words here"))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO,
                                      "stream": True}, request_id)
    events = _sse_events(response.text)
    assert orjson.loads(events[-2])["error"]["code"] == "upstream_idle_timeout"
    assert openai_gateway.record(request_id)["status"] == "failed"


def test_malformed_sse_ends_with_an_error_event(openai_gateway, upstream, request_id):
    upstream.script(Behaviour(malformed_sse=True))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO,
                                      "stream": True}, request_id)
    events = _sse_events(response.text)
    assert orjson.loads(events[-2])["error"]["code"] == "bad_upstream_response"
    row = openai_gateway.record(request_id)
    assert row["status"] == "failed" and row["partial_text"]


def test_client_that_disconnects_midstream_cancels_upstream_and_is_recorded(
        openai_gateway, upstream, request_id):
    upstream.script(Behaviour(chunk_delay=0.1, reply=" ".join(["word"] * 40)))
    _read_four_events_and_leave(openai_gateway.url, request_id)
    assert upstream.wait_for(lambda: upstream.connections_closed_by_client == 1, timeout=3)
    row = openai_gateway.record(request_id)
    assert row["status"] == "client_disconnected"
    assert row["partial_text"].startswith("word")
    assert row["tokens_output"] > 0 and row["usage_source"] == "local"


def _ask_and_leave(url: str, request_id: str, *, stream: bool, after: float) -> None:
    """Ask for a chat answer and hang up `after` seconds, before it comes."""
    with pytest.raises(httpx.TimeoutException):
        httpx.post(url + "/v1/chat/completions",
                   json={"model": "gpt-4o-mini", "messages": HELLO, "stream": stream},
                   headers={"Authorization": f"Bearer {CLIENT_KEY}",
                            "x-request-id": request_id}, timeout=after)


def _read_four_events_and_leave(url: str, request_id: str) -> None:
    """Stream a chat answer, read four of its events, and hang up."""
    with httpx.stream("POST", url + "/v1/chat/completions",
                      json={"model": "gpt-4o-mini", "messages": HELLO, "stream": True},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}",
                               "x-request-id": request_id}) as response:
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data: ")
            if received == 4:
                break


def test_stream_error_before_the_first_byte_gets_an_http_status(openai_gateway, upstream,
                                                               request_id):
    upstream.script(Behaviour(status=503))
    response = _post(openai_gateway, {"model": "gpt-4o-mini", "messages": HELLO,
                                      "stream": True}, request_id)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")


def test_a_json_request_whose_client_hung_up_is_not_retried_nor_answered(tmp_path, upstream,
                                                                       request_id):
    # Three attempts allowed, each timing out at 0.6 s: the client leaves at 0.3 s, and no
    # attempt after the first is made for it (each could be billed).
    upstream.default = Behaviour(hang=2.0)
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY, CIRCUIT_FIRST_BYTE_TIMEOUT=0.6,
                           CIRCUIT_RETRY_MAX_ATTEMPTS=3, CIRCUIT_RETRY_BACKOFF_INITIAL=0.05,
                           CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000).start()
    try:
        _ask_and_leave(server.url, request_id, stream=False, after=0.3)
        row = server.record(request_id)
    finally:
        server.stop()
    assert (row["status"], row["status_code"], row["error_code"]) == (
        "client_disconnected", 499, "client_disconnected")
    assert row["attempts"] == 1 and upstream.calls == 1
    assert orjson.loads(row["attempt_errors"])[0]["error"] == "upstream_timeout"
    assert row["ttfb_ms"] is None, "nothing reached the client"


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_gone_while_the_upstream_is_slow_is_recorded_as_client_disconnected(
        openai_gateway, upstream, request_id, stream):
    upstream.script(Behaviour(hang=3))
    _ask_and_leave(openai_gateway.url, request_id, stream=stream, after=0.3)
    row = openai_gateway.record(request_id)
    assert (row["status"], row["status_code"]) == ("client_disconnected", 499)


def test_under_plain_uvicorn_a_hang_up_is_noticed_without_the_protocols_hang_up(
        tmp_path, upstream, request_id):
    # `uvicorn circuit.main:app` serves the app with uvicorn's own protocol, which puts no
    # HangUp in the scope: the relay and the client watch await `receive` instead.
    server = GatewayServer(tmp_path, protocol="httptools", PROVIDER="openai",
                           OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY).start()
    try:
        upstream.script(Behaviour(chunk_delay=0.1, reply=" ".join(["word"] * 40)))
        _read_four_events_and_leave(server.url, request_id)
        assert upstream.wait_for(lambda: upstream.connections_closed_by_client == 1, timeout=3)
        streamed = server.record(request_id)
        upstream.script(Behaviour(hang=3))
        _ask_and_leave(server.url, request_id + "-slow", stream=True, after=0.3)
        waited = server.record(request_id + "-slow")
    finally:
        server.stop()
    assert (streamed["status"], streamed["partial_text"][:4]) == ("client_disconnected", "word")
    assert (waited["status"], waited["status_code"]) == ("client_disconnected", 499)


def test_a_pipelining_client_that_hangs_up_cuts_the_stream_in_flight(openai_gateway, upstream,
                                                                     request_id):
    # Two requests written at once on one connection, then the client leaves while the first
    # streams: that one is told, though uvicorn itself tells only the newest request.
    upstream.script(Behaviour(chunk_delay=0.1, reply=" ".join(["word"] * 40)))
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": HELLO, "stream": True})
    with connect(openai_gateway.port) as sock:
        sock.sendall(chat_request(body, extra=f"x-request-id: {request_id}\r\n".encode())
                     + chat_request(body, extra=f"x-request-id: {request_id}-2\r\n".encode()))
        received = b""
        while received.count(b"data: ") < 3:
            received += sock.recv(65536)
    assert upstream.wait_for(lambda: upstream.connections_closed_by_client == 1, timeout=3)
    row = openai_gateway.record(request_id)
    assert row["status"] == "client_disconnected" and row["partial_text"].startswith("word")


def test_a_pipelining_client_gone_while_its_first_answer_is_awaited_is_recorded_and_no_write_fails(
        openai_gateway, upstream, request_id, caplog):
    upstream.script(Behaviour(hang=1.0))
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": HELLO})
    with connect(openai_gateway.port) as sock:
        sock.sendall(chat_request(body, extra=f"x-request-id: {request_id}\r\n".encode())
                     + chat_request(body, extra=f"x-request-id: {request_id}-2\r\n".encode()))
        time.sleep(0.2)  # the first request waits on its upstream; then the client leaves
    row = openai_gateway.record(request_id)
    assert (row["status"], row["status_code"]) == ("client_disconnected", 499)
    assert not [r for r in caplog.records if r.exc_info], "its answer's write raised"


def test_a_stream_whose_client_left_during_a_retry_wait_is_charged_nothing(tmp_path, upstream,
                                                                           request_id):
    # Every call so far was refused (429): no upstream was working on the request when its
    # client left, so there is no input to pay for.
    upstream.default = Behaviour(status=429, retry_after="5")
    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url,
                           OPENAI_API_KEY=PROVIDER_KEY, CIRCUIT_DAILY_USD_LIMIT=10).start()
    try:
        _ask_and_leave(server.url, request_id, stream=True, after=0.5)
        row = server.record(request_id)
    finally:
        server.stop()
    assert (row["status"], row["status_code"], row["attempts"]) == (
        "client_disconnected", 499, 1)
    assert (row["cost_micros"] or 0, row["tokens_input"]) == (0, 0)
    assert upstream.calls == 1
