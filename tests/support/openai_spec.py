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
