"""Validators for OpenAI's own response schemas, read from its official OpenAPI description.

The description is shared/specs/openai-openapi.yaml beside the repository (or
CIRCUIT_OPENAI_SPEC). Two adjustments make it checkable with `jsonschema`: OpenAPI's
`nullable: true` becomes "or null", and every object schema that declares its properties (and
says nothing of others) refuses undeclared ones, so a misspelt or invented field fails too.
Without the file the tests skip, saying why, unless CI is set: then they fail.
"""

from __future__ import annotations

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

SPEC_PATH = Path(os.environ.get(
    "CIRCUIT_OPENAI_SPEC",
    Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "openai-openapi.yaml"))
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
        spec = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    resource = Resource.from_contents(_checkable(spec), default_specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


def _checkable(node: Any) -> Any:
    if isinstance(node, list):
        return [_checkable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _checkable(value) for key, value in node.items()}
    if isinstance(node.get("properties"), dict) and "additionalProperties" not in node \
            and not any(k in node for k in ("allOf", "anyOf", "oneOf")):
        node["additionalProperties"] = False
    if node.pop("nullable", False) is True:
        return {"anyOf": [node, {"type": "null"}]}
    return node
