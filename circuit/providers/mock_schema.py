"""Deterministic JSON values from a JSON Schema: the mock's structured answers and tool arguments.

Hand-written rather than `jsf` or `hypothesis-jsonschema`: both draw values at random (jsf
through Faker, hypothesis through its engine, which also warns against `.example()` outside
tests), both would be runtime dependencies of the gateway for one mock feature, and neither
handles recursive `$ref`s, which pydantic emits for self-referencing models.

The same schema always gives the same value. What a value is made of:
- objects: every declared property near the top (optional ones too), only the required ones
  past `_LEAN_DEPTH` levels, so recursive models end; `minProperties` is filled from
  `patternProperties` or `additionalProperties`;
- arrays: `max(minItems, 1)` items (capped by `maxItems`), `minItems` when deep; `prefixItems`
  and tuple-style `items`; `contains`; items differ from each other, for `uniqueItems`;
- `const`, then `enum` (its first value), `$ref` (local JSON pointers, `#` included), `allOf`
  (merged), `anyOf`/`oneOf` (the first non-null branch, the null one when deep), type lists
  (nullable types: the same rule);
- strings, numbers, booleans: `mock_scalars`.

Limits, by design: sizes are capped, since schemas come from clients (a value of about 20,000
characters of JSON at most, 1,000 items or properties); `not`, `if`/`then`/`else`, `propertyNames`
and remote `$ref`s are not interpreted; `oneOf` branches that overlap may both match the value.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from circuit.providers.mock_pattern import string_matching
from circuit.providers.mock_scalars import is_number, number_value, size, string_value

#: Past this depth objects keep only required properties and arrays their minimum items.
_LEAN_DEPTH = 4
#: Past this depth (nesting and `$ref` hops) the schema is taken as unsatisfiable: null.
_MAX_DEPTH = 48
#: Schemas come from clients: a value has at most about this JSON size (nulls past it), and
#: no `minItems` or `minProperties` is followed past `_MAX_ITEMS`.
_MAX_SIZE = 20_000
_MAX_ITEMS = 1_000
#: Keys tried from a `patternProperties` pattern (each a longer match) before `key1`, `key2`...
_PATTERN_KEYS = 8
_LOWER = ("minimum", "minLength", "minItems", "minProperties", "exclusiveMinimum")
_UPPER = ("maximum", "maxLength", "maxItems", "maxProperties", "exclusiveMaximum")
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


def example_value(schema: Any) -> Any:
    """A value that validates against `schema` (within the limits above), always the same."""
    return _Generator(schema).value(schema, None, 0, 0)


class _Generator:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.size_left = _MAX_SIZE

    def value(self, schema: Any, name: str | None, depth: int, salt: int) -> Any:
        value = self._value(schema, name, depth, salt)
        # Charged by (about) its JSON size, a container by its punctuation, so the budget
        # bounds both the answer and the work of making it.
        self.size_left -= len(value) + 2 if isinstance(value, str) else (
            2 if isinstance(value, dict | list) else len(repr(value)))
        return value if self.size_left >= 0 else None

    def _value(self, schema: Any, name: str | None, depth: int, salt: int) -> Any:
        if depth > _MAX_DEPTH or self.size_left < 0:
            return None
        schema = self.flatten(schema, depth)
        if schema is False or schema is None:
            return None
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[salt % len(enum)]
        branches = _branches(schema)
        if branches:
            branch = _pick_branch(branches, self, depth)
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            return self.value(_merge(rest, self.flatten(branch, depth)), name, depth + 1, salt)
        kind = _kind(schema, depth)
        if kind == "object":
            return self.object(schema, depth, salt)
        if kind == "array":
            return self.array(schema, name, depth, salt)
        if kind == "string":
            return string_value(schema, name, salt)
        if kind == "integer":
            return number_value(schema, salt, integer=True)
        if kind == "number":
            return number_value(schema, salt, integer=False)
        if kind == "boolean":
            return salt % 2 == 0
        return None

    def flatten(self, schema: Any, depth: int) -> Any:
        """The schema with `$ref` resolved and `allOf` merged in (to any depth of chains)."""
        for hop in range(_MAX_DEPTH - depth + 1):
            if not isinstance(schema, dict):
                return {} if schema is True else schema if schema is False else None
            ref = schema.get("$ref")
            parts = schema.get("allOf")
            if not isinstance(ref, str) and not isinstance(parts, list):
                return schema
            rest = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
            if isinstance(ref, str):
                rest = _merge(self.resolve(ref), rest)
            for part in parts if isinstance(parts, list) else ():
                rest = _merge(rest, self.flatten(part, depth + hop + 1))
            schema = rest
        return None

    def resolve(self, ref: str) -> Any:
        """A local reference (`#`, `#/$defs/Name`, any JSON pointer); `{}` for others."""
        if not ref.startswith("#"):
            return {}
        node = self.root
        for token in ref[1:].split("/")[1:]:
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return {}
        return node

    def object(self, schema: dict, depth: int, salt: int) -> dict:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [r for r in _list(schema.get("required")) if isinstance(r, str)]
        extra = schema.get("additionalProperties", True)
        lean = depth >= _LEAN_DEPTH
        names = [n for n in properties if not lean or n in required]
        names += [n for n in required if n not in properties]
        for trigger, needed in _dependent_required(schema).items():
            if trigger in names:
                names += [n for n in needed if isinstance(n, str) and n not in names]
        most = size(schema.get("maxProperties"))
        if most is not None and len(names) > most:
            room = most - sum(n in required for n in names)
            kept = []
            for n in names:
                if n in required or room > 0:
                    room -= n not in required
                    kept.append(n)
            names = kept
        result = {}
        for n in names:
            if self.size_left < 0:
                break
            result[n] = self.value(properties.get(n, extra if isinstance(extra, dict) else {}),
                                   n, depth + 1, salt)
        least = min(size(schema.get("minProperties")) or 0, _MAX_ITEMS)
        if not result and isinstance(extra, dict) and extra and not lean:
            least = max(least, 1)  # show what a map holds, as a model would
        self._fill_properties(schema, result, least, depth)
        return result

    def _fill_properties(self, schema: dict, result: dict, least: int, depth: int) -> None:
        """Add keys until there are `least`: matching a pattern property, then `key`, `key1`..."""
        patterns = schema.get("patternProperties")
        extra = schema.get("additionalProperties", True)
        for index in range(least + _PATTERN_KEYS):
            if len(result) >= least or self.size_left < 0:
                return
            key, value_schema = None, extra
            if isinstance(patterns, dict) and patterns and index < _PATTERN_KEYS:
                pattern, value_schema = next(iter(patterns.items()))
                key = string_matching(str(pattern), index + 1)
            if key is None or key in result:
                if extra is False:
                    continue
                key, value_schema = f"key{index or ''}", extra
                if key in result:
                    continue
            result[key] = self.value(value_schema if isinstance(value_schema, dict) else {},
                                     key, depth + 1, index)

    def array(self, schema: dict, name: str | None, depth: int, salt: int) -> list:
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        if isinstance(items, list):  # draft 4-7 tuples
            prefix, items = items, schema.get("additionalItems", {})
        prefix = prefix if isinstance(prefix, list) else []
        least = min(size(schema.get("minItems")) or 0, _MAX_ITEMS)
        most = size(schema.get("maxItems"))
        count = max(least, len(prefix), 0 if depth >= _LEAN_DEPTH else 1)
        if items is False:
            count = min(count, len(prefix))
        if most is not None:
            count = min(count, most)
        contains = schema.get("contains")
        values = []
        for index in range(count):
            if self.size_left < 0:
                break
            item = prefix[index] if index < len(prefix) else items
            if index == 0 and contains is not None and not prefix:
                item = {"allOf": [item, contains]}
            values.append(self.value(item, _singular(name), depth + 1, salt + index))
        return values


def _branches(schema: dict) -> list | None:
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if isinstance(branches, list) and branches:
            return branches
    return None


def _pick_branch(branches: list, generator: _Generator, depth: int) -> Any:
    """The first non-null branch; near the depth limit the null one, so recursion ends."""
    flat = [generator.flatten(b, depth) for b in branches]
    nulls = [b for b, f in zip(branches, flat, strict=True)
             if isinstance(f, dict) and f.get("type") == "null"]
    others = [b for b in branches if b not in nulls]
    if depth >= _LEAN_DEPTH and nulls:
        return nulls[0]
    return (others or nulls)[0]


def _kind(schema: dict, depth: int) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        known = [k for k in kind if k in _TYPES]
        non_null = [k for k in known if k != "null"]
        if depth >= _LEAN_DEPTH and "null" in known:
            return "null"
        return (non_null or known or [None])[0]
    if kind in _TYPES:
        return kind
    if any(k in schema for k in ("properties", "required", "additionalProperties",
                                  "patternProperties", "minProperties")):
        return "object"
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems", "contains")):
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                                  "multipleOf")):
        return "number"
    return "string"  # anything goes: a string is the most telling


def _merge(base: Any, extra: Any) -> Any:
    """Both schemas at once (allOf, `$ref` siblings, a branch and its parent): properties and
    required joined, bounds tightened, the rest taken from `extra` when both have it."""
    if not isinstance(base, dict):
        return extra if isinstance(extra, dict) else base
    if not isinstance(extra, dict):
        return base if extra is not False else False
    merged = {**base, **extra}
    for key in _LOWER:
        if is_number(base.get(key)) and is_number(extra.get(key)):
            merged[key] = max(base[key], extra[key])
    for key in _UPPER:
        if is_number(base.get(key)) and is_number(extra.get(key)):
            merged[key] = min(base[key], extra[key])
    if isinstance(base.get("properties"), dict) and isinstance(extra.get("properties"), dict):
        properties = dict(base["properties"])
        for name, sub in extra["properties"].items():
            properties[name] = {"allOf": [properties[name], sub]} if name in properties else sub
        merged["properties"] = properties
    if isinstance(base.get("required"), list) and isinstance(extra.get("required"), list):
        merged["required"] = [*base["required"],
                              *(r for r in extra["required"] if r not in base["required"])]
    if isinstance(base.get("enum"), list) and isinstance(extra.get("enum"), list):
        merged["enum"] = [v for v in base["enum"] if v in extra["enum"]] or extra["enum"]
    if "type" in base and "type" in extra:
        merged["type"] = _common_type(base["type"], extra["type"])
    if "items" in base and "items" in extra and isinstance(base["items"], dict):
        merged["items"] = {"allOf": [base["items"], extra["items"]]}
    return merged


def _common_type(first: Any, second: Any) -> Any:
    one = first if isinstance(first, list) else [first]
    two = second if isinstance(second, list) else [second]
    both = [t for t in one if t in two or (t == "integer" and "number" in two)]
    both += [t for t in two if t == "integer" and "number" in one and t not in both]
    if not both:
        return second
    return both[0] if len(both) == 1 else both


def _dependent_required(schema: dict) -> dict[str, list]:
    found = {}
    for keyword in ("dependentRequired", "dependencies"):
        table = schema.get(keyword)
        if isinstance(table, dict):
            found.update({k: v for k, v in table.items() if isinstance(v, list)})
    return found


def _singular(name: str | None) -> str | None:
    if name and len(name) > 3 and name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []
