"""Strings made to match a JSON Schema `pattern`, deterministically."""

from __future__ import annotations

import re

import pytest

from circuit.providers.mock_pattern import string_matching

PATTERNS = [r"^[A-Z]{3}-\d{4}$", r"^\w+@\w+\.com$", r"[^abc]x", r"(foo|bar)-\1",
            r"^(?:\+\d{1,3} )?\(\d{3}\) \d{3}-\d{4}$", r"^[\s\S]{2,}$", r"^a.+?z$",
            r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$", r"(?i)^hello$", r"^\D\W\S$",
            r"^(?>ab|a)c$", r"^(a)?(?(1)b|c)$"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_string_matches(pattern):
    assert re.search(pattern, string_matching(pattern))


def test_repeats_take_their_minimum_and_classes_their_first_member():
    assert string_matching(r"^[A-Z]{3}-\d{4}$") == "AAA-0000"


def test_open_repeats_grow_to_reach_a_minimum_length():
    text = string_matching(r"^[a-z]+$", min_length=300)
    assert len(text) >= 300 and re.search(r"^[a-z]+$", text)


def test_a_maximum_length_is_kept_when_the_pattern_allows():
    assert len(string_matching(r"^x{2,}$", min_length=5, max_length=6)) <= 6


@pytest.mark.parametrize("pattern", [r"^[^\s\S]$", "[", r"(?=\d)^[a-z]$"],
                         ids=["empty-class", "invalid", "contradicting-lookahead"])
def test_a_pattern_nothing_can_be_made_for_gives_none(pattern):
    assert string_matching(pattern) is None


def test_a_pattern_asking_for_a_huge_string_gives_up():
    assert string_matching(r"^((a{999}){999}){999}$") is None
