"""The official openai SDK's structured helpers against the gateway on the mock provider."""

from __future__ import annotations

import openai

from tests.clients.shapes import PERSON_PROMPT, WEATHER_QUESTION, GetWeather, Person

MODEL = "gpt-4o-mini"


def test_parse_returns_the_pydantic_model(mock_gateway):
    completion = mock_gateway.client().chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": PERSON_PROMPT}],
        response_format=Person)
    message = completion.choices[0].message
    assert isinstance(message.parsed, Person)
    assert message.parsed == Person.model_validate_json(message.content)


def test_parse_gives_parsed_arguments_for_a_strict_function_tool(mock_gateway):
    completion = mock_gateway.client().chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[openai.pydantic_function_tool(GetWeather)])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "GetWeather"
    assert isinstance(call.function.parsed_arguments, GetWeather)


def test_stream_helper_assembles_the_parsed_model(mock_gateway):
    with mock_gateway.client().chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": PERSON_PROMPT}],
            response_format=Person) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 5, "the JSON arrives in fragments"
    assert isinstance(final.choices[0].message.parsed, Person)


def test_stream_helper_assembles_tool_call_arguments(mock_gateway):
    with mock_gateway.client().chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": WEATHER_QUESTION}],
            tools=[openai.pydantic_function_tool(GetWeather)]) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
    (event,) = done
    assert event.name == "GetWeather"
    assert isinstance(event.parsed_arguments, GetWeather)
