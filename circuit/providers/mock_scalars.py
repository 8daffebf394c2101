"""Strings, numbers and booleans from a JSON Schema's constraints, for `mock_schema`.

- strings: the property's name (`tag-1`, `tag-2`... for later items, so unique items differ),
  padded or cut to `minLength`/`maxLength`; a `pattern` through `mock_pattern`; the formats
  date-time, date, time, duration, email, uri, uuid, hostname, ipv4 and ipv6;
- numbers: 1 (2, 3... for later items) moved inside `minimum`/`maximum` and the exclusive
  bounds (both drafts' forms), then onto `multipleOf`; integers past 64 bits as floats (JSON
  Schema counts 1e300 as an integer; orjson writes no larger int);
- booleans: true (false, true... for later items).

Limits: a format wins over length limits; a pattern that cannot be met falls back to the name;
no `minLength` is followed past 10,000 characters.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from circuit.providers.mock_pattern import string_matching

_MAX_LENGTH = 10_000
_INT64 = 2**63 - 1
_FORMATS = {
    "date-time": lambda i: f"2024-01-{1 + i % 28:02d}T00:00:00Z",
    "date": lambda i: f"2024-01-{1 + i % 28:02d}",
    "time": lambda i: f"{i % 24:02d}:00:00Z",
    "duration": lambda i: f"P{1 + i}D",
    "email": lambda i: f"user{i or ''}@example.com",
    "idn-email": lambda i: f"user{i or ''}@example.com",
    "uri": lambda i: f"https://example.com/{i or ''}",
    "url": lambda i: f"https://example.com/{i or ''}",
    "iri": lambda i: f"https://example.com/{i or ''}",
    "uri-reference": lambda i: f"/{i or ''}",
    "uuid": lambda i: f"00000000-0000-4000-8000-{i:012d}",
    "hostname": lambda i: f"host{i or ''}.example.com",
    "idn-hostname": lambda i: f"host{i or ''}.example.com",
    "ipv4": lambda i: f"192.0.2.{1 + i % 254}",
    "ipv6": lambda i: f"2001:db8::{1 + i % 65535:x}",
}


def string_value(schema: dict, name: str | None, salt: int) -> str:
    """A string for `schema`, named after its property."""
    least = min(size(schema.get("minLength")) or 0, _MAX_LENGTH)
    most = size(schema.get("maxLength"))
    fmt = schema.get("format")
    fmt = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    if fmt is not None:
        return fmt(salt)
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        text = string_matching(pattern, least, most)
        if text is not None:
            return text
    text = name or "string"
    if salt:
        text = f"{text}-{salt}"
    if len(text) < least:
        text = (text * (least // len(text) + 1))[:least]
    return text if most is None else text[:most]


def number_value(schema: dict, salt: int, *, integer: bool) -> int | float:
    """A number (an integer if asked) inside the schema's bounds, on its `multipleOf`."""
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum")
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum")

    def inside(number: float) -> bool:
        return ((low is None or number > low or (not low_open and number == low))
                and (high is None or number < high or (not high_open and number == high)))

    value: float = 1 + salt
    if integer:
        value = _clamp_integer(value, low, low_open, high, high_open)
    elif not inside(value):
        if low is not None and high is not None:
            value = low if not low_open else high if not high_open else low / 2 + high / 2
        elif low is not None:
            value = low + 1 + salt
        else:
            value = high - 1 - salt
    step = schema.get("multipleOf")
    if is_number(step) and step > 0:
        value = _on_step(value, step, inside, integer)
    if isinstance(value, int) and abs(value) > _INT64:
        return float(value)
    return value


def _clamp_integer(value: float, low, low_open, high, high_open) -> int:
    result = math.ceil(value)
    if low is not None:
        result = max(result, math.floor(low) + 1 if low_open else math.ceil(low))
    if high is not None:
        result = min(result, math.ceil(high) - 1 if high_open else math.floor(high))
    return result


def _on_step(value, step, inside, integer: bool):
    """The first multiple of `step` from `value` on that is inside the bounds, and exact in
    floats (a validator divides by `step` to check it); `value` itself if none is near."""
    try:
        exact = Decimal(str(step))
        start = math.ceil(Decimal(str(value)) / exact)
        for k in (*range(start, start + 4), *range(start - 1, start - 5, -1)):
            candidate = exact * k
            whole = candidate == candidate.to_integral_value()
            if integer and not whole:
                continue
            number = int(candidate) if whole else float(candidate)
            quotient = number / step
            if inside(number) and math.isfinite(quotient) and quotient == int(quotient):
                return number
    except (ArithmeticError, InvalidOperation, ValueError):
        pass  # steps and bounds at the ends of the float range: keep the bounded value
    return value


def _bound(schema: dict, inclusive: str, exclusive: str) -> tuple[float | None, bool]:
    """A bound and whether it is exclusive, from draft 6+ (a number) or draft 4 (a flag)."""
    open_value = schema.get(exclusive)
    closed = schema.get(inclusive)
    if is_number(open_value):
        if is_number(closed) and ((closed > open_value) if inclusive == "minimum"
                                   else (closed < open_value)):
            return closed, False
        return open_value, True
    if is_number(closed):
        return closed, open_value is True
    return None, False


def size(value: Any) -> int | None:
    """A schema's count or length limit, if it is a usable one."""
    if is_number(value) and value >= 0:
        return math.floor(value)
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
