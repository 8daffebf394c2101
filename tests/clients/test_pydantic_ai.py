"""pydantic-ai agents (tools, typed output) on the OpenAI provider, pointed at the gateway."""

from __future__ import annotations

import asyncio

import pytest
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.clients.shapes import WEATHER_QUESTION, CityWeather, get_weather
from tests.support.gateway_server import CLIENT_KEY


@pytest.fixture
def model(mock_gateway) -> OpenAIChatModel:
    return OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(
        base_url=mock_gateway.url + "/v1", api_key=CLIENT_KEY))


def _agent(model: OpenAIChatModel, output_type, calls: list) -> Agent:
    def weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return get_weather(city)

    return Agent(model, output_type=output_type, tools=[weather])


@pytest.mark.parametrize("output_type", [CityWeather, NativeOutput(CityWeather)],
                         ids=["tool-output", "native-output"])
def test_agent_calls_its_tool_then_returns_the_typed_output(model, output_type):
    calls: list[str] = []
    result = _agent(model, output_type, calls).run_sync(WEATHER_QUESTION)
    assert isinstance(result.output, CityWeather)
    assert len(calls) == 1


def test_agent_with_text_output_answers_about_the_tool_result(model):
    calls: list[str] = []
    result = _agent(model, str, calls).run_sync(WEATHER_QUESTION)
    assert len(calls) == 1
    assert "Sunny and 21 degrees" in result.output


def test_streamed_agent_run_gives_the_typed_output(model):
    async def run() -> CityWeather:
        calls: list[str] = []
        async with _agent(model, CityWeather, calls).run_stream(WEATHER_QUESTION) as stream:
            return await stream.get_output()

    assert isinstance(asyncio.run(run()), CityWeather)
