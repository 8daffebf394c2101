"""Validators for OpenAI's own response schemas, read from its official OpenAPI description.

The schemas come from OpenAI's OpenAPI description (shared/specs/openai-openapi.yaml),
extracted into tests/specs/openai-schemas.json so every clone has them (or CIRCUIT_OPENAI_SPEC
names the whole YAML). Two adjustments make it checkable with `jsonschema`: OpenAPI's
`nullable: true` becomes "or null", and every object schema that declares its properties (and
says nothing of others) refuses undeclared ones, so a misspelt or invented field fails too.
Without the file the tests skip, saying why, unless CI is set: then they fail.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.postgres import in_ci

#: The schemas the tests check against, extracted from OpenAI's OpenAPI description
#: (scripts/extract_openai_schemas); CIRCUIT_OPENAI_SPEC may name the whole YAML instead.
SPEC_PATH = Path(os.environ.get(
    "CIRCUIT_OPENAI_SPEC", Path(__file__).resolve().parents[1] / "specs" / "openai-schemas.json"))
_URI = "urn:openai-openapi"


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for `components.schemas.<name>` (skips, or fails in CI, without the spec)."""
    if not SPEC_PATH.exists():
        message = f"OpenAI's OpenAPI description is not at {SPEC_PATH}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return jsonschema.Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{name}"},
                                           registry=_registry())


@cache
def _registry() -> Registry:
    with SPEC_PATH.open() as file:
        spec = json.load(file) if SPEC_PATH.suffix == ".json" else \
            yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    resource = Resource.from_contents(_checkable(spec), default_specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


def _checkable(node: Any, parts: frozenset[str] | None = None, part: bool = False) -> Any:
    """`parts`: the schemas that are members of an `allOf` (the Response object is three):
    those stay open, and the `allOf` that joins them is closed instead
    (`unevaluatedProperties` sees the properties of every member)."""
    if parts is None:
        parts = frozenset(_all_of_refs(node))
    if isinstance(node, list):
        return [_checkable(item, parts, part) for item in node]
    if not isinstance(node, dict):
        return node
    joined = isinstance(node.get("allOf"), list)
    checked = {}
    for key, value in node.items():
        if key == "allOf" and joined:
            checked[key] = [_checkable(member, parts, True) for member in value]
        elif key == "schemas" and isinstance(value, dict):
            checked[key] = {name: _checkable(schema, parts, name in parts)
                            for name, schema in value.items()}
        else:
            checked[key] = _checkable(value, parts)
    node = checked
    if joined and "unevaluatedProperties" not in node:
        node["unevaluatedProperties"] = False
    elif not part and isinstance(node.get("properties"), dict) \
            and "additionalProperties" not in node \
            and not any(k in node for k in ("allOf", "anyOf", "oneOf")):
        node["additionalProperties"] = False
    if node.pop("nullable", False) is True:
        return {"anyOf": [node, {"type": "null"}]}
    return node


def _all_of_refs(node: Any) -> set[str]:
    """The names of the schemas some `allOf` refers to."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for member in item.get("allOf") or () if isinstance(item.get("allOf"), list) else ():
                ref = member.get("$ref") if isinstance(member, dict) else None
                if isinstance(ref, str):
                    found.add(ref.rsplit("/", 1)[-1])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
