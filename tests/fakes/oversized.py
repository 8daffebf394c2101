"""Answers of any size, written a MiB at a time so the fake never holds them: for tests of the
gateway's bounds on what upstreams send."""

from __future__ import annotations

from aiohttp import web

_PIECE = b"x" * (1 << 20)


async def write_padded(response: web.StreamResponse, prefix: bytes, size: int,
                       suffix: bytes) -> None:
    """Write `prefix`, then `size` bytes of "x", then `suffix`."""
    await response.write(prefix)
    left = size
    while left > 0:
        piece = _PIECE if left >= len(_PIECE) else _PIECE[:left]
        await response.write(piece)
        left -= len(piece)
    await response.write(suffix)
