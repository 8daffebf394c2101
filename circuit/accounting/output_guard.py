"""OutputGuard: notices a stream whose output passes what its request reserved.

An upstream that ignores `max_tokens` (or `n`) would otherwise spend past the reservation, and
the budget, before its usage arrives at the end. Two checks, cheapest first:

- Events. A streaming server sends an event once it has at least one new token, so more
  content events than the limit means more tokens than the limit: cut, at once and exactly,
  for servers that stream a token or so per event (OpenAI, vLLM, Ollama).
- Counting. For servers that send several tokens per event, the new text is counted with the
  tokenizer once its bytes pass `BYTES_PER_TOKEN` times what is left of the limit (real text
  runs at 3-5 bytes a token, so an honest stream is hardly ever counted), before the read is
  relayed; a cut there comes within that factor of the limit.

Small pieces are counted on the event loop (microseconds, once the tokenizer is loaded);
large ones, and the first, which may load the tokenizer, on a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: Bytes of new output per token left of the limit before the text is counted.
BYTES_PER_TOKEN = 6
#: Bytes of output counted at the least in one step, so a stream near its limit is not
#: counted read by read.
_MIN_STEP = 64
#: Text up to this size is counted inline when the tokenizer is loaded (~50 µs).
_INLINE_BYTES = 2048


class OutputGuard:
    """Tracks one stream's output against `limit` tokens."""

    __slots__ = ("limit", "_count", "_ready", "_events", "_bytes", "_counted_bytes",
                 "_counted_tokens", "_counted_pieces", "_steps")

    def __init__(self, limit: int, count: Callable[[str], int],
                 ready: Callable[[], bool] = lambda: False) -> None:
        self.limit = limit
        self._count = count  # blocking: may load the tokenizer
        self._ready = ready  # whether counting is cheap now (the tokenizer is loaded)
        self._events = 0
        self._bytes = 0
        self._counted_bytes = 0
        self._counted_tokens = 0
        self._counted_pieces = 0
        self._steps = 0

    def add(self, events: int, size: int) -> None:
        """`events` content events carrying `size` bytes of output text arrived."""
        self._events += events
        self._bytes += size

    def due(self) -> bool:
        """Whether the output may have passed the limit (cheap; `exceeded` decides)."""
        return self._events > self.limit or self._bytes - self._counted_bytes > max(
            BYTES_PER_TOKEN * (self.limit - self._counted_tokens), _MIN_STEP)

    async def exceeded(self, pieces: list[str]) -> bool:
        """Whether the output (`pieces`: everything streamed so far) has passed the limit."""
        if self._events > self.limit:
            return True
        if not self.due():
            return False
        new = self._bytes - self._counted_bytes
        text = "".join(pieces[self._counted_pieces:])
        self._counted_pieces, self._counted_bytes = len(pieces), self._bytes
        self._steps += 1
        try:
            if new <= _INLINE_BYTES and self._ready():
                self._counted_tokens += self._count(text)
            else:
                self._counted_tokens += await asyncio.to_thread(self._count, text)
        except Exception:  # no tokenizer: the usual four bytes a token, as an estimate
            self._counted_tokens += new // 4
        # Text counted in separate steps may split a token in two: allow one a step.
        return self._counted_tokens - self._steps > self.limit
