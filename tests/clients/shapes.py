"""The pydantic models and tool the client tests ask the mock for: nested, constrained, the
kind of schema pydantic emits ($defs, anyOf with null, enums, formats, bounds)."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, Field

WEATHER_QUESTION = "What is the weather in Paris right now?"
PERSON_PROMPT = "Invent a person who lives in Lyon."


class Address(BaseModel):
    street: str = Field(min_length=3)
    city: str
    postcode: str = Field(pattern=r"^\d{5}$")


class Person(BaseModel):
    name: str = Field(min_length=2, max_length=40)
    age: int = Field(ge=18, le=120)
    role: Literal["engineer", "designer", "manager"]
    address: Address
    previous_address: Address | None = None
    skills: list[str] = Field(min_length=1, max_length=5)
    born: datetime.date


class CityWeather(BaseModel):
    city: str
    temperature_c: float = Field(ge=-60, le=60)
    conditions: Literal["sunny", "cloudy", "rain", "snow"]


class GetWeather(BaseModel):
    """Current weather for a city."""

    city: str = Field(description="The city's name")
    unit: Literal["celsius", "fahrenheit"] = "celsius"


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Current weather for a city."""
    return f"Sunny and 21 degrees {unit} in {city}"
