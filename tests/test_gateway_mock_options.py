"""The mock provider's structured output, `n`, `stop`, token limits and logprobs, through the
gateway, as the official SDK sees them."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from tests.support.gateway_server import CLIENT_KEY

ASK = [{"role": "user", "content": "Describe a city"}]
CITY = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 3},
    "population": {"type": "integer", "minimum": 1000},
    "founded": {"type": "string", "format": "date"},
    "districts": {"type": "array", "items": {"$ref": "#/$defs/District"}, "minItems": 2},
    "mayor": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    "required": ["name", "population", "founded", "districts", "mayor"],
    "additionalProperties": False,
    "$defs": {"District": {"type": "object", "properties": {
        "name": {"type": "string"}, "kind": {"enum": ["urban", "rural"]}},
        "required": ["name", "kind"], "additionalProperties": False}}}


def _create(gateway, messages=ASK, **options):
    return gateway.client().chat.completions.create(model="gpt-4o-mini", messages=messages,
                                                    **options)


def _schema_format(strict: bool) -> dict:
    return {"type": "json_schema",
            "json_schema": {"name": "city", "strict": strict, "schema": CITY}}


def _stream_text(chunks, index: int = 0) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks
                   if c.choices and c.choices[0].index == index)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "not-strict"])
def test_json_schema_answer_validates(mock_gateway, strict):
    completion = _create(mock_gateway, response_format=_schema_format(strict))
    jsonschema.validate(json.loads(completion.choices[0].message.content), CITY,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_streamed_json_schema_answer_validates_when_joined(mock_gateway):
    chunks = list(_create(mock_gateway, response_format=_schema_format(True), stream=True))
    assert len(chunks) > 10
    jsonschema.validate(json.loads(_stream_text(chunks)), CITY)


def test_json_object_answer_is_an_object(mock_gateway):
    completion = _create(mock_gateway, response_format={"type": "json_object"},
                         messages=[{"role": "user", "content": "Answer in JSON"}])
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_json_object_follows_a_schema_written_in_the_prompt(mock_gateway):
    system = f"Reply in JSON matching this schema:\n{json.dumps(CITY, indent=2)}\nThanks."
    completion = _create(mock_gateway, response_format={"type": "json_object"},
                         messages=[{"role": "system", "content": system}, *ASK])
    jsonschema.validate(json.loads(completion.choices[0].message.content), CITY)


def test_the_same_request_gets_the_same_answer(mock_gateway):
    first, second = (_create(mock_gateway, response_format=_schema_format(True))
                     for _ in range(2))
    assert first.choices[0].message.content == second.choices[0].message.content


def test_n_gives_n_indexed_choices_and_counts_them_all(mock_gateway):
    one = _create(mock_gateway)
    three = _create(mock_gateway, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert {c.message.content for c in three.choices} == {one.choices[0].message.content}
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert three.usage.prompt_tokens == one.usage.prompt_tokens


def test_n_streams_every_choice_with_its_index(mock_gateway, request_id):
    chunks = list(_create(mock_gateway, n=2, stream=True,
                          stream_options={"include_usage": True},
                          extra_headers={"x-request-id": request_id}))
    assert _stream_text(chunks, 0) == _stream_text(chunks, 1) != ""
    finishes = [c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason]
    assert sorted(finishes) == [0, 1]
    usage = chunks[-1].usage
    assert mock_gateway.record(request_id)["tokens_output"] == usage.completion_tokens


@pytest.mark.parametrize(("stop", "kept"), [("mock", "This is a "),
                                            (["gateway", "reply", "zzz"], "This is a mock ")],
                         ids=["string", "list-earliest-wins"])
def test_stop_cuts_before_the_first_stop_sequence(mock_gateway, stop, kept):
    full = _create(mock_gateway).choices[0].message.content
    assert full.startswith(kept) and len(full) > len(kept)
    choice = _create(mock_gateway, stop=stop).choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == kept


def test_stop_applies_to_the_stream_too(mock_gateway):
    chunks = list(_create(mock_gateway, stop="mock", stream=True))
    assert _stream_text(chunks) == "This is a "
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("limits", [{"max_tokens": 5}, {"max_completion_tokens": 5},
                                    {"max_tokens": 9, "max_completion_tokens": 5},
                                    {"max_tokens": 5, "max_completion_tokens": 9}],
                         ids=["max_tokens", "max_completion_tokens", "both", "both-reversed"])
def test_the_smaller_token_limit_cuts_at_an_exact_token(mock_gateway, limits):
    choice_usage = _create(mock_gateway, **limits)
    assert choice_usage.choices[0].finish_reason == "length"
    assert choice_usage.usage.completion_tokens == 5
    assert choice_usage.choices[0].message.content == "This is a mock reply"


def test_a_zero_token_limit_gets_an_empty_reply_cut_for_length(mock_gateway):
    # The gateway leaves the knob to the upstream (the official SDK's tests send 0); the mock
    # answers it leniently: nothing, cut for length.
    response = httpx.post(mock_gateway.url + "/v1/chat/completions",
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "gpt-4o-mini", "messages": ASK, "max_tokens": 0})
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("", "length")


def test_logprobs_cover_every_token_in_openai_shape(mock_gateway):
    completion = _create(mock_gateway, logprobs=True, top_logprobs=3)
    choice = completion.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == completion.usage.completion_tokens
    assert b"".join(bytes(e.bytes) for e in entries).decode() == choice.message.content
    assert choice.logprobs.refusal is None
    for entry in entries:
        assert entry.logprob < 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True)


def test_logprobs_are_absent_unless_asked_for(mock_gateway):
    assert _create(mock_gateway, top_logprobs=3).choices[0].logprobs is None


def test_streamed_logprobs_come_with_their_chunks(mock_gateway):
    chunks = [c for c in _create(mock_gateway, logprobs=True, top_logprobs=1, stream=True)
              if c.choices and c.choices[0].delta.content]
    assert len(chunks) > 10
    for chunk in chunks:
        entries = chunk.choices[0].logprobs.content
        assert b"".join(bytes(e.bytes) for e in entries).decode() == chunk.choices[0].delta.content


def test_logprobs_of_non_ascii_text_split_only_between_whole_characters(mock_gateway):
    chunks = [c for c in _create(mock_gateway, messages=[{"role": "user", "content": "日本語 😀"}],
                                 logprobs=True, stream=True)
              if c.choices and c.choices[0].delta.content]
    assert "日本語 😀" in "".join(c.choices[0].delta.content for c in chunks)
    assert all("\ufffd" not in c.choices[0].delta.content for c in chunks)


def test_response_schema_counts_as_prompt_tokens(mock_gateway):
    structured = _create(mock_gateway, response_format=_schema_format(True))
    assert structured.usage.prompt_tokens > _create(mock_gateway).usage.prompt_tokens + 50
