"""langchain-openai's tool binding and structured output against the mock provider."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.clients.shapes import PERSON_PROMPT, WEATHER_QUESTION, GetWeather, Person
from tests.clients.shapes import get_weather as weather_function
from tests.support.gateway_server import CLIENT_KEY

get_weather = tool(weather_function)


@pytest.fixture
def chat(mock_gateway) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini", base_url=mock_gateway.url + "/v1",
                      api_key=CLIENT_KEY, max_retries=0, timeout=15)


def test_bind_tools_gives_a_tool_call_with_valid_arguments(chat):
    message = chat.bind_tools([get_weather]).invoke(WEATHER_QUESTION)
    (call,) = message.tool_calls
    assert call["name"] == "get_weather"
    assert GetWeather.model_validate(call["args"])


def test_streamed_tool_call_chunks_add_up_to_the_call(chat):
    chunks = list(chat.bind_tools([get_weather]).stream(WEATHER_QUESTION))
    assert len(chunks) > 3
    whole = sum(chunks[1:], chunks[0])
    (call,) = whole.tool_calls
    assert call["name"] == "get_weather" and GetWeather.model_validate(call["args"])


def test_tool_loop_ends_with_text_about_the_result(chat):
    model = chat.bind_tools([get_weather])
    history = [HumanMessage(WEATHER_QUESTION)]
    history.append(model.invoke(history))
    for call in history[-1].tool_calls:
        history.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    answer = model.invoke(history)
    assert answer.tool_calls == []
    assert "Sunny and 21 degrees" in answer.content


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_with_structured_output_gives_the_model(chat, method):
    prompt = PERSON_PROMPT
    if method == "json_mode":  # the schema must then be in the prompt, as langchain documents
        prompt += f" Answer in JSON following this schema: {json.dumps(Person.model_json_schema())}"
    person = chat.with_structured_output(Person, method=method).invoke(prompt)
    assert isinstance(person, Person)
