"""Usage an upstream reports that cannot be right, and how it is told apart.

The reservation bounds what a request can bill only if the upstream keeps its side: honours
the output limits and counts what it sent. Two checks flag an upstream that does not. Past the
bound: reported input above the request's input bound, or output above its output limit
(a certainty: the bounds are upper bounds). Far above a local count: reported output well over
twice what the tokenizer counts in the text it sent — checked on the record writer's thread,
and only when the cheap sign says it may be so (more tokens than half the text's bytes, where
real text runs near four bytes a token).
"""

from __future__ import annotations

from circuit.accounting.bound import utf8_len
from circuit.wire import Usage

#: Reported output past FACTOR x the local count (+ SLACK) is an anomaly.
FACTOR, SLACK = 2, 16


def past_bound(usage: Usage, input_limit: int | None, output_limit: int | None) -> str | None:
    """Why `usage` passes the request's bounds, or None."""
    if input_limit is not None and usage.input_tokens > input_limit:
        return f"input_over_bound: {usage.input_tokens} reported, at most {input_limit} sent"
    if output_limit is not None and usage.output_tokens > output_limit:
        return (f"output_over_bound: {usage.output_tokens} reported, at most {output_limit} "
                "allowed")
    return None


def worth_verifying(usage: Usage, output_text: str) -> bool:
    """Whether the reported output could be far above a local count of `output_text`."""
    visible = usage.output_tokens - usage.reasoning_tokens
    return visible > SLACK and visible > utf8_len(output_text) // 2


def above_local_count(reported: int, counted: int) -> str | None:
    """Why `reported` output tokens cannot be the `counted` ones, or None."""
    if reported > FACTOR * counted + SLACK:
        return f"output_above_local_count: {reported} reported, {counted} counted locally"
    return None
