"""Strings that match a regular expression, made deterministically (for JSON Schema `pattern`).

The pattern is parsed with the standard library's own regex parser (`re._parser`, the module
`re.compile` uses; hypothesis and exrex build on it too) and walked once: every repeat takes its
minimum count, alternatives their first branch, character classes their first member (so
`^[A-Z]{3}-\\d{4}$` gives "AAA-0000"). To reach a `minLength`, open repeats are lengthened a
few steps, then at once by the length asked for; lengthening also gets past most lookarounds
(the walk skips them). Every candidate is checked with `re.search`, as JSON Schema does; when
none matches the result is None and the caller falls back.
"""

from __future__ import annotations

import re
from re import _constants as C  # noqa: N812 - the parser's opcode names
from re import _parser

#: Extra repetitions tried, in order, to reach a minimum length.
_EXTRA_STEPS = (0, 1, 2, 4, 8)
#: Patterns come from clients: no string is made longer (nor repeat taken more often).
_MAX_LENGTH = 10_000
#: Characters tried, in order, for a negated class or `.`.
_CANDIDATES = "a0A-_ xb1B.~"
_CATEGORY_CHARS = {
    C.CATEGORY_DIGIT: "0", C.CATEGORY_NOT_DIGIT: "a",
    C.CATEGORY_SPACE: " ", C.CATEGORY_NOT_SPACE: "a",
    C.CATEGORY_WORD: "a", C.CATEGORY_NOT_WORD: "-",
    C.CATEGORY_LINEBREAK: "\n", C.CATEGORY_NOT_LINEBREAK: "a",
}


class _Unsupported(Exception):
    """A construct a single deterministic walk cannot produce."""


def string_matching(pattern: str, min_length: int = 0, max_length: int | None = None) -> str | None:
    """A string `re.search(pattern, s)` accepts, within the lengths when the pattern allows;
    None when none can be made."""
    try:
        parsed = _parser.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    best: str | None = None
    for extra in (*_EXTRA_STEPS, min_length):
        try:
            text = _walk(parsed, extra, {})
        except (_Unsupported, RecursionError):
            return best
        if compiled.search(text) is None:
            continue
        if max_length is not None and len(text) > max_length:
            return best or text
        best = text
        if len(text) >= min_length:
            return text
    return best


def _walk(items, extra: int, groups: dict[int, str], budget: list[int] | None = None) -> str:
    """One string the parsed pattern matches; `budget` bounds the work (characters and repeat
    rounds), since patterns come from clients."""
    budget = budget if budget is not None else [2 * _MAX_LENGTH + 8]  # a character and a round each
    out: list[str] = []
    for op, value in items:
        if op is C.LITERAL:
            out.append(chr(value))
        elif op is C.NOT_LITERAL:
            out.append(next(c for c in _CANDIDATES if ord(c) != value))
        elif op is C.ANY:
            out.append("a")
        elif op is C.IN:
            out.append(_class_member(value))
        elif op is C.CATEGORY:
            out.append(_CATEGORY_CHARS.get(value, "a"))
        elif op is C.BRANCH:
            out.append(_walk(value[1][0], extra, groups, budget))
        elif op is C.SUBPATTERN:
            group, _, _, body = value
            text = _walk(body, extra, groups, budget)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            low, high, body = value
            count = low + extra if high == C.MAXREPEAT else min(high, low + extra)
            for _ in range(count):
                budget[0] -= 1
                if budget[0] < 0:
                    raise _Unsupported("pattern too long")
                out.append(_walk(body, extra, groups, budget))
        elif op is C.ATOMIC_GROUP:
            out.append(_walk(value, extra, groups, budget))
        elif op is C.GROUPREF:
            out.append(groups.get(value, ""))
            budget[0] -= len(out[-1])
        elif op is C.GROUPREF_EXISTS:
            group, yes, no = value
            branch = yes if group in groups else no
            out.append(_walk(branch, extra, groups, budget) if branch is not None else "")
        elif op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            continue  # anchors and lookarounds match a position, not characters
        else:
            raise _Unsupported(str(op))
        if op in _ONE_CHARACTER:
            budget[0] -= 1
        if budget[0] < 0:
            raise _Unsupported("pattern too long")
    return "".join(out)


_ONE_CHARACTER = (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.CATEGORY)


def _class_member(items) -> str:
    if items and items[0][0] is C.NEGATE:
        rest = items[1:]
        for candidate in _CANDIDATES:
            if not _in_class(rest, candidate):
                return candidate
        raise _Unsupported("negated class excludes every candidate")
    for op, value in items:
        if op is C.LITERAL:
            return chr(value)
        if op is C.RANGE:
            return chr(value[0])
        if op is C.CATEGORY:
            return _CATEGORY_CHARS.get(value, "a")
    raise _Unsupported("empty class")


def _in_class(items, char: str) -> bool:
    code = ord(char)
    for op, value in items:
        if op is C.LITERAL and value == code:
            return True
        if op is C.RANGE and value[0] <= code <= value[1]:
            return True
        if op is C.CATEGORY and re.fullmatch(_CATEGORY_REGEX.get(value, "(?!)"), char):
            return True
    return False


_CATEGORY_REGEX = {
    C.CATEGORY_DIGIT: r"\d", C.CATEGORY_NOT_DIGIT: r"\D",
    C.CATEGORY_SPACE: r"\s", C.CATEGORY_NOT_SPACE: r"\S",
    C.CATEGORY_WORD: r"\w", C.CATEGORY_NOT_WORD: r"\W",
}
