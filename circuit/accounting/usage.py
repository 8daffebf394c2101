"""Token usage of one request, as the provider reported it or as counted locally."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

UsageSource = Literal["provider", "local"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one request. `input_tokens` includes cached and cache-write tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    source: UsageSource = "provider"
    #: Of `output_tokens`, those spent thinking: billed, but not in the answer's text.
    reasoning_tokens: int = 0
