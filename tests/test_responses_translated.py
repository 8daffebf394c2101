"""The Responses door in front of upstreams that speak no Responses, over real HTTP: a
chat-completions-only OpenAI-compatible server (`responses = false`) and Anthropic."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from tests.fakes.anthropic_upstream import Behaviour as AnthropicBehaviour
from tests.fakes.anthropic_upstream import ToolUse
from tests.fakes.openai_upstream import Behaviour
from tests.support.gateway_server import CLIENT_KEY, GatewayServer
from tests.support.responses_routes import WEATHER


def _post(gateway, body: dict, request_id: str) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/responses", content=orjson.dumps(body),
                      headers={"Authorization": f"Bearer {CLIENT_KEY}",
                               "x-request-id": request_id}, timeout=10)


# -- chat-only OpenAI-compatible upstream ------------------------------------------------------

def test_chat_only_upstream_is_sent_chat_completions_and_answered_as_a_response(
        door, upstream, request_id):
    response = door.client().responses.create(
        model="local-llama", input="Hello from the test", instructions="Be brief.",
        max_output_tokens=50, extra_headers={"x-request-id": request_id})
    assert response.output_text.startswith("Echo: Hello from the test")
    assert response.status == "completed" and response.usage.output_tokens > 0
    sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Hello from the test"}]
    assert sent.body["model"] == "llama-3.1-8b" and sent.body["max_tokens"] == 50
    row = door.record(request_id)
    assert (row["api"], row["upstream_api"], row["provider"]) == ("responses", "chat", "local")
    assert row["tokens_output"] == response.usage.output_tokens
    assert row["usage_source"] == "provider"


def test_chat_only_upstream_answer_cut_by_length_is_incomplete(door, upstream, request_id):
    response = door.client().responses.create(model="local-llama", input="Hi",
                                                 max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"


def test_chat_only_upstream_failure_is_an_openai_shaped_error(door, upstream, request_id):
    upstream.script(Behaviour(status=500))
    with pytest.raises(openai.InternalServerError):
        door.client().responses.create(model="local-llama", input="Hi",
                                          extra_headers={"x-request-id": request_id})
    assert door.record(request_id)["status"] == "failed"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("chat_param, param", [
    ("max_completion_tokens", "max_output_tokens"), ("max_tokens", "max_output_tokens"),
    ("messages[1].content", "input"), ("tools[0].function.name", "tools[0].function.name"),
    ("response_format", "text.format"), ("logit_bias", None)])
def test_a_chat_upstreams_400_names_the_field_as_the_responses_client_sent_it(
        door, upstream, chat_param, param, stream):
    upstream.script(Behaviour(status=400, error_param=chat_param))
    with pytest.raises(openai.BadRequestError) as raised:
        door.client().responses.create(model="local-llama", input="Hi", max_output_tokens=20,
                                       stream=stream)
    assert raised.value.body.get("param") == param
    assert raised.value.param == param


def test_chat_only_upstream_reasoning_reaches_the_sdk_as_a_reasoning_item(door, upstream,
                                                                           request_id):
    upstream.script(Behaviour(reasoning="Weigh the greeting first"))
    response = door.client().responses.create(model="local-llama", input="Hello",
                                              extra_headers={"x-request-id": request_id})
    reasoning = response.output[0]
    assert reasoning.type == "reasoning"
    assert [part.text for part in reasoning.content] == ["Weigh the greeting first"]
    assert response.output_text.startswith("Echo: Hello")
    assert door.record(request_id)["tokens_output"] == response.usage.output_tokens


def test_chat_only_upstream_reasoning_streams_as_reasoning_text_events(door, upstream):
    upstream.script(Behaviour(reasoning="Weigh the greeting first"))
    with door.client().responses.stream(model="local-llama", input="Hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "".join(part.text for part in final.output[0].content) == \
        "Weigh the greeting first"
    assert kinds.index("response.reasoning_text.delta") < \
        kinds.index("response.output_text.delta")
    assert final.output_text.startswith("Echo: Hello")


def test_previous_response_id_for_a_translated_target_is_a_clear_400(door, upstream,
                                                                     request_id):
    with pytest.raises(openai.BadRequestError) as raised:
        door.client().responses.create(model="local-llama", input="And then?",
                                          previous_response_id="resp_123",
                                          extra_headers={"x-request-id": request_id})
    assert "previous_response_id" in raised.value.message
    assert "does not speak the Responses API" in raised.value.message
    assert upstream.calls == 0
    assert door.record(request_id)["status"] == "rejected"


@pytest.mark.parametrize("extra", [{"background": True},
                                   {"conversation": "conv_1"},
                                   {"prompt": {"id": "pmpt_1"}}])
def test_other_stored_state_for_a_translated_target_is_a_400(door, upstream, request_id,
                                                             extra):
    answer = _post(door, {"model": "claude", "input": "Hi", **extra}, request_id)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "unsupported_parameter"


def test_stored_state_goes_to_the_target_that_speaks_responses_in_a_route(door, upstream,
                                                                          request_id):
    answer = _post(door, {"model": "gpt-or-claude", "input": "Hi",
                             "previous_response_id": "resp_123"}, request_id)
    assert answer.status_code == 200
    assert upstream.last.path == "/v1/responses"
    assert upstream.last.body["previous_response_id"] == "resp_123"


def test_hosted_tool_for_a_translated_target_is_a_400_naming_it(door, upstream, request_id):
    answer = _post(door, {"model": "local-llama", "input": "Hi",
                             "tools": [{"type": "web_search"}]}, request_id)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "tools[0]"
    assert upstream.calls == 0


# -- Anthropic ---------------------------------------------------------------------------------

def test_anthropic_target_is_sent_messages_and_answered_as_a_response(
        door, anthropic_upstream, request_id):
    response = door.client().responses.create(
        model="claude", input="Hello Claude", instructions="Be brief.",
        extra_headers={"x-request-id": request_id})
    assert response.output_text.startswith("Echo: Hello Claude")
    sent = anthropic_upstream.last.body
    assert sent["system"] == "Be brief." and sent["model"] == "claude-sonnet-4-5"
    row = door.record(request_id)
    assert (row["api"], row["upstream_api"]) == ("responses", "messages")
    assert row["tokens_input"] == response.usage.input_tokens > 0


def test_anthropic_tool_use_is_a_function_call_item_and_its_output_goes_back(
        door, anthropic_upstream, request_id):
    anthropic_upstream.script(AnthropicBehaviour(
        tool_uses=[ToolUse("weather", {"city": "Paris"}, id="toolu_1")]))
    client = door.client()
    first = client.responses.create(model="claude", input="Weather in Paris?",
                                    tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, orjson.loads(call.arguments), call.call_id) == (
        "weather", {"city": "Paris"}, "toolu_1")
    second = client.responses.create(model="claude", tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text
    turns = anthropic_upstream.last.body["messages"]
    assert turns[1]["content"][0]["type"] == "tool_use"
    assert turns[2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "sunny"}


# -- the mock ----------------------------------------------------------------------------------

def test_mock_provider_answers_the_responses_door_translated(mock_gateway, request_id):
    response = mock_gateway.client().responses.create(
        model="gpt-4o-mini", input="Hello mock", extra_headers={"x-request-id": request_id})
    assert response.output_text and response.usage.output_tokens > 0
    row = mock_gateway.record(request_id)
    assert (row["api"], row["upstream_api"], row["provider"]) == ("responses", "chat", "mock")


def test_mock_provider_streams_the_sdk_event_sequence(mock_gateway):
    with mock_gateway.client().responses.stream(model="gpt-4o-mini", input="Hello") as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text


def test_without_a_provider_that_speaks_responses_a_stored_response_is_a_clear_404(
        mock_gateway):
    with pytest.raises(openai.NotFoundError) as raised:
        mock_gateway.client().responses.retrieve("resp_123")
    assert "keeps no responses of its own" in raised.value.message


_REASONER = """
[providers.reasoner]
kind = "openai"
base_url = "{url}"
api_key_env = "TEST_OPENAI_KEY"
responses = false
{field}
[routes]
"o4-mini" = ["reasoner:o4-mini"]
"""


@pytest.mark.parametrize("field", ['max_tokens_field = "max_completion_tokens"', ""])
def test_a_chat_only_upstream_is_sent_the_output_limit_its_config_names(tmp_path, upstream,
                                                                         field):
    # A chat-only upstream gets max_tokens unless its table says max_completion_tokens; the
    # fake refuses max_tokens for o4-mini as OpenAI does, and that 400 reaches the client.
    (tmp_path / "circuit.toml").write_text(_REASONER.format(url=upstream.base_url, field=field))
    server = GatewayServer(tmp_path, TEST_OPENAI_KEY="sk-openai-test-key",
                           CIRCUIT_RETRY_MAX_ATTEMPTS=1).start()
    try:
        client = server.client()
        if field:
            response = client.responses.create(model="o4-mini", input="Hi", max_output_tokens=3)
            assert response.status == "incomplete"
            assert upstream.last.body["max_completion_tokens"] == 3
            assert "max_tokens" not in upstream.last.body
        else:
            with pytest.raises(openai.BadRequestError) as caught:
                client.responses.create(model="o4-mini", input="Hi", max_output_tokens=3)
            assert "max_completion_tokens" in caught.value.message
            assert upstream.last.body["max_tokens"] == 3
    finally:
        server.stop()


def test_a_chat_only_upstreams_streamed_tool_call_is_a_function_call_item(door, upstream):
    upstream.script(Behaviour(tool_call={"name": "weather", "arguments": '{"city": "Paris"}'}))
    with door.client().responses.stream(model="local-llama", input="Weather in Paris?",
                                        tools=[WEATHER]) as stream:
        done = [event for event in stream
                if event.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    assert [event.arguments for event in done] == ['{"city": "Paris"}']
    assert [(item.type, item.name) for item in final.output] == [("function_call", "weather")]
    assert upstream.last.body["tools"][0]["function"]["name"] == "weather"


_BUDGETED_CHAT_ONLY = """
[providers.local]
kind = "openai"
base_url = "{url}"
api_key_env = "TEST_OPENAI_KEY"
responses = false

[routes]
"thinker" = ["local:gpt-4o-mini"]
"""


def test_reasoning_past_max_output_tokens_is_cut(tmp_path, upstream):
    # A budget makes the gateway watch a stream's output against what max_output_tokens
    # reserved; reasoning is output, so an upstream that thinks past the bound is cut.
    upstream.default = Behaviour(reasoning="hmm " * 3000, ignore_max_tokens=True,
                                 chunk_delay=0.001)
    (tmp_path / "circuit.toml").write_text(_BUDGETED_CHAT_ONLY.format(url=upstream.base_url))
    server = GatewayServer(tmp_path, TEST_OPENAI_KEY="sk-openai-test-key",
                           CIRCUIT_RETRY_MAX_ATTEMPTS=1, CIRCUIT_DAILY_USD_LIMIT=5).start()
    try:
        with httpx.stream("POST", server.url + "/v1/responses", timeout=15,
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "thinker", "input": "Hi", "stream": True,
                                "max_output_tokens": 20}) as response:
            raw = b"".join(response.iter_raw())
        events = [orjson.loads(line[6:]) for line in raw.split(b"\n")
                  if line.startswith(b"data: ")]
        assert events[-1]["type"] == "error"
        # Numbered after the last event the client got, not after what was read and cut.
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert sum(e["type"] == "response.reasoning_text.delta" for e in events) <= 20 + 32
        row = server.record(response.headers["x-request-id"])
        assert (row["status"], row["error_code"]) == ("failed", "upstream_overrun")
    finally:
        server.stop()
