"""The meter and the request bound: a cheap upper bound before the call, exact counts only
when needed, off the loop."""

from __future__ import annotations

import pytest

from circuit.accounting.bound import chat_bound
from circuit.accounting.meter import Meter
from circuit.accounting.pricing import PriceTable
from circuit.accounting.tokens import TokenCounter

PROMPTS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "Why?"}],
    [{"role": "user", "name": "bob", "content": "naïve café — 東京 🚀 " * 40}],
    [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                  {"type": "image_url",
                                   "image_url": {"url": "data:image/png;base64," + "A" * 5000}}]}],
    [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
     {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'}],
    [{"role": "user", "content": "<|endoftext|> " + "x" * 3000}],
]


@pytest.fixture(scope="module")
def counter():
    return TokenCounter.load()


@pytest.mark.parametrize("messages", PROMPTS)
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "claude-sonnet-4-5"])
def test_the_prompt_bound_is_never_below_the_exact_count(counter, messages, model):
    bound = chat_bound({"model": model, "messages": messages})
    assert bound.text_tokens >= counter.count_messages(model, messages)


def test_media_bytes_do_not_inflate_the_text_bound():
    assert chat_bound({"messages": PROMPTS[3]}).text_tokens < 100


def test_the_tokenizer_is_loaded_only_when_first_needed(counter):
    loads = []
    meter = Meter(PriceTable.default(), load_counter=lambda: loads.append(1) or counter)
    meter.worst_case_micros("gpt-4o", chat_bound({"messages": PROMPTS[1], "max_tokens": 50}))
    assert loads == []
    assert meter.count_locally("gpt-4o", PROMPTS[0], "Hi!").output_tokens == 2
    meter.count_locally("gpt-4o", PROMPTS[0], "Hi!")
    assert loads == [1]


def test_a_gateway_whose_provider_reports_usage_never_loads_the_tokenizer(tmp_path, upstream):
    from tests.support.gateway_server import GatewayServer

    server = GatewayServer(tmp_path, PROVIDER="openai", OPENAI_API_KEY="sk-upstream-test",
                           OPENAI_BASE_URL=upstream.base_url).start()
    try:
        for stream in (False, True):
            response = server.client().chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                stream=stream)
            list(response) if stream else response
        assert len(server.records(expect=2)) == 2
        assert server.gateway.meter._counter is None, "no local count was needed"
    finally:
        server.stop()
