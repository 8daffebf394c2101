"""The mock's JSON Schema value generator: every value validates, and is always the same."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from circuit.providers.mock_schema import example_value


def _valid(schema: dict) -> object:
    value = example_value(schema)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
                                    ).validate(value)
    return value


CASES = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
    "enum": {"enum": ["red", "green"]},
    "const": {"const": {"a": [1, 2]}},
    "required-and-optional": {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]},
    "required-not-declared": {"type": "object", "required": ["x"],
                              "additionalProperties": {"type": "integer"}},
    "closed-object": {"type": "object", "properties": {"a": {"type": "string"}},
                      "required": ["a"], "additionalProperties": False},
    "nested-objects": {"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "object", "properties": {"c": {"type": "boolean"}},
              "required": ["c"]}}, "required": ["b"]}}, "required": ["a"]},
    "array-bounds": {"type": "array", "items": {"type": "string"}, "minItems": 3,
                     "maxItems": 4},
    "array-max-zero": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
    "unique-items": {"type": "array", "items": {"type": "integer", "maximum": 10},
                     "minItems": 4, "uniqueItems": True},
    "unique-objects": {"type": "array", "minItems": 2, "uniqueItems": True, "items": {
        "type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]}},
    "prefix-items": {"type": "array", "prefixItems": [{"type": "integer"},
                                                      {"type": "string"}], "items": False},
    "contains": {"type": "array", "items": {"type": "integer"},
                 "contains": {"const": 7}},
    "ref-defs": {"$defs": {"P": {"type": "object", "properties": {"x": {"type": "integer"}},
                                 "required": ["x"]}},
                 "type": "object", "properties": {"p": {"$ref": "#/$defs/P"}},
                 "required": ["p"]},
    "ref-definitions": {"definitions": {"N": {"type": "integer", "minimum": 5}},
                        "$ref": "#/definitions/N"},
    "ref-with-siblings": {"$defs": {"S": {"type": "string"}},
                          "$ref": "#/$defs/S", "minLength": 12},
    "recursive-root": {"type": "object", "properties": {
        "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["value", "children"]},
    "any-of": {"anyOf": [{"type": "integer", "minimum": 3}, {"type": "string"}]},
    "one-of-discriminated": {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]},
        {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]}]},
    "all-of": {"allOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"properties": {"b": {"type": "integer", "minimum": 2}}, "required": ["b"]}]},
    "nullable-type-list": {"type": ["string", "null"], "minLength": 2},
    "nullable-any-of": {"anyOf": [{"$ref": "#/$defs/T"}, {"type": "null"}],
                        "$defs": {"T": {"type": "integer"}}},
    "date-time": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "time": {"type": "string", "format": "time"},
    "email": {"type": "string", "format": "email"},
    "uri": {"type": "string", "format": "uri"},
    "uuid": {"type": "string", "format": "uuid"},
    "ipv4": {"type": "string", "format": "ipv4"},
    "ipv6": {"type": "string", "format": "ipv6"},
    "hostname": {"type": "string", "format": "hostname"},
    "duration": {"type": "string", "format": "duration"},
    "min-length": {"type": "string", "minLength": 40},
    "max-length": {"type": "string", "maxLength": 2},
    "pattern": {"type": "string", "pattern": r"^[A-Z]{2}-\d{3}$"},
    "pattern-min-length": {"type": "string", "pattern": "^[a-z]+$", "minLength": 9},
    "pattern-with-lookahead": {"type": "string",
                               "pattern": r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$"},
    "minimum": {"type": "integer", "minimum": 100},
    "maximum": {"type": "integer", "maximum": -5},
    "exclusive-bounds": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "exclusive-integer": {"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 3},
    "draft4-exclusive": {"type": "number", "minimum": 1, "exclusiveMinimum": True,
                         "maximum": 1.5},
    "multiple-of-integer": {"type": "integer", "multipleOf": 7, "minimum": 20},
    "multiple-of-float": {"type": "number", "multipleOf": 0.1, "minimum": 0.25},
    "map": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 3}},
    "min-properties": {"type": "object", "minProperties": 3,
                       "patternProperties": {"^k[a-z]+$": {"type": "boolean"}},
                       "additionalProperties": False},
    "max-properties": {"type": "object", "maxProperties": 1, "required": ["b"],
                       "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
    "dependent-required": {"type": "object", "dependentRequired": {"a": ["z"]},
                           "properties": {"a": {"type": "string"}}},
    "untyped": {},
}


@pytest.mark.parametrize("schema", CASES.values(), ids=CASES.keys())
def test_value_validates(schema):
    _valid(schema)


class Address(BaseModel):
    street: str
    postcode: str = Field(pattern=r"^\d{5}$")


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=1, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]


class Node(BaseModel):
    value: int
    children: list[Node] = []


class Person(BaseModel):
    name: str = Field(min_length=2, max_length=20)
    age: int = Field(gt=17, lt=130)
    score: float = Field(gt=0, lt=1)
    tags: set[str] = Field(min_length=2)
    address: Address
    previous: Address | None = None
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    born: datetime.date
    seen: datetime.datetime
    id: uuid.UUID
    tree: Node
    counts: dict[str, int]
    pair: tuple[int, str]


def test_pydantic_model_schema_gives_a_valid_instance():
    schema = Person.model_json_schema()
    assert isinstance(Person.model_validate(_valid(schema)), Person)


def test_the_same_schema_always_gives_the_same_value():
    schema = Person.model_json_schema()
    assert example_value(schema) == example_value(schema)


def test_optional_properties_are_filled_near_the_top():
    value = _valid(Person.model_json_schema())
    assert value["previous"] is not None and value["counts"]


def test_recursion_ends_with_what_is_required():
    value = _valid(CASES["recursive-root"])
    depth = 0
    while value["children"]:
        value, depth = value["children"][0], depth + 1
    assert 0 < depth < 10


def test_a_ref_cycle_with_nothing_to_stand_on_gives_null():
    schema = {"$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}},
              "$ref": "#/$defs/A"}
    assert example_value(schema) is None


def test_strings_are_named_after_their_property():
    value = example_value({"type": "object", "properties": {"city": {"type": "string"}}})
    assert value == {"city": "city"}


_leaf = st.one_of(
    st.builds(lambda low, extra: {"type": "string", "minLength": low, "maxLength": low + extra},
              st.integers(0, 30), st.integers(0, 30)),
    st.builds(lambda low, extra: {"type": "integer", "minimum": low, "maximum": low + extra},
              st.integers(-1000, 1000), st.integers(0, 50)),
    st.builds(lambda low, extra: {"type": "number", "exclusiveMinimum": low,
                                  "exclusiveMaximum": low + extra},
              st.integers(-50, 50), st.integers(1, 50)),
    st.builds(lambda values: {"enum": values}, st.lists(st.text(max_size=5), min_size=1,
                                                        max_size=4, unique=True)),
    st.sampled_from([{"type": "boolean"}, {"type": "null"}, {"const": 3},
                     {"type": "string", "format": "date-time"}, {"type": "string",
                                                                 "format": "email"}]),
)


def _compound(children: st.SearchStrategy) -> st.SearchStrategy:
    named = st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), children,
                            max_size=4)
    return st.one_of(
        st.builds(lambda props, data: {"type": "object", "properties": props,
                                       "required": data.draw(st.lists(
                                           st.sampled_from(sorted(props)), unique=True))
                                       if props else [], "additionalProperties": False},
                  named, st.data()),
        st.builds(lambda item, low, extra: {"type": "array", "items": item, "minItems": low,
                                            "maxItems": low + extra},
                  children, st.integers(0, 3), st.integers(0, 3)),
        st.builds(lambda options: {"anyOf": options}, st.lists(children, min_size=1,
                                                              max_size=3)),
        st.builds(lambda inner: {"anyOf": [inner, {"type": "null"}]}, children),
    )


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(_leaf, _compound, max_leaves=12))
def test_any_satisfiable_schema_of_these_keywords_gets_a_valid_value(schema):
    _valid(schema)


# What orjson hands over from a client's body: integers within 64 bits, finite floats.
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    | st.sampled_from(["integer", "number", "string", "object", "array", "null", "#"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["type", "properties", "items", "$ref", "anyOf", "allOf", "enum", "required",
         "minimum", "exclusiveMaximum", "multipleOf", "pattern", "minItems", "format", "x"]),
        inner, max_size=5),
    max_leaves=20)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(_json)
def test_any_json_as_a_schema_gives_a_value_orjson_can_write(schema):
    orjson.dumps(example_value(schema))
