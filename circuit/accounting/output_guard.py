"""OutputGuard: notices a stream whose output passes what its request reserved.

An upstream that ignores `max_tokens` (or `n`) would otherwise spend past the reservation, and
the budget, before its usage arrives at the end. Counting every event's tokens would cost the
relay; but a token covers at least one byte, so while the output's new bytes stay within what
is left of the limit it cannot have passed it, and nothing is counted. Only past that point is
the new text counted exactly, on a worker thread, before the read that may pass the limit is
relayed; what is left of the limit then says when to look again. A stream that stays within
its limit in bytes is never counted nor delayed; one that runs long is counted about once
over, in a few steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Bytes of output counted at the least in one step, so a stream near its limit is not
#: counted read by read (the cut may come up to this many tokens late).
_MIN_STEP = 32


class OutputGuard:
    """Tracks one stream's output against `limit` tokens."""

    __slots__ = ("limit", "_count", "_bytes", "_counted_bytes", "_counted_tokens",
                 "_counted_pieces", "_steps")

    def __init__(self, limit: int, count: Callable[[str], int]) -> None:
        self.limit = limit
        self._count = count  # blocking: runs on a worker thread
        self._bytes = 0
        self._counted_bytes = 0
        self._counted_tokens = 0
        self._counted_pieces = 0
        self._steps = 0

    def add(self, size: int) -> None:
        """`size` more bytes of output text arrived."""
        self._bytes += size

    def due(self) -> bool:
        """Whether the output may have passed the limit, so it must be counted (cheap)."""
        return self._bytes - self._counted_bytes > max(self.limit - self._counted_tokens,
                                                       _MIN_STEP)

    async def exceeded(self, pieces: list[str]) -> bool:
        """Whether the output (`pieces`: everything streamed so far) has passed the limit."""
        if not self.due():
            return False
        new = self._bytes - self._counted_bytes
        text = "".join(pieces[self._counted_pieces:])
        self._counted_pieces, self._counted_bytes = len(pieces), self._bytes
        self._steps += 1
        try:
            self._counted_tokens += await asyncio.to_thread(self._count, text)
        except Exception:  # no tokenizer: the usual four bytes a token, as an estimate
            self._counted_tokens += new // 4
        # Text counted in separate steps may split a token in two: allow one a step.
        return self._counted_tokens - self._steps > self.limit
