"""instructor's response models, in its TOOLS and JSON modes, against the mock provider."""

from __future__ import annotations

import pytest

from tests.clients.shapes import PERSON_PROMPT, WEATHER_QUESTION, CityWeather, Person
from tests.support.postgres import in_ci

try:
    import instructor
except ImportError:
    # Not in the `test` extra (its jiter pin would hold back the openai SDK): scripts/_bootstrap
    # installs it. Required under CI.
    if in_ci():
        raise
    pytest.skip("instructor is not installed (scripts/_bootstrap installs it)",
                allow_module_level=True)


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON],
                         ids=["tools", "json"])
def test_response_model_is_filled_in_mode(mock_gateway, mode):
    client = instructor.from_openai(mock_gateway.client(), mode=mode)
    person = client.chat.completions.create(
        model="gpt-4o-mini", response_model=Person, max_retries=0,
        messages=[{"role": "user", "content": PERSON_PROMPT}])
    assert isinstance(person, Person)


def test_partial_stream_grows_into_the_whole_model(mock_gateway):
    # (Not Person: instructor validates partials strictly, and a date never passes as text.)
    client = instructor.from_openai(mock_gateway.client(), mode=instructor.Mode.TOOLS)
    partials = list(client.chat.completions.create_partial(
        model="gpt-4o-mini", response_model=CityWeather, max_retries=0,
        messages=[{"role": "user", "content": WEATHER_QUESTION}]))
    assert len(partials) > 1
    assert partials[0].conditions is None
    assert CityWeather.model_validate(partials[-1].model_dump())
