"""An incremental Server-Sent Events decoder for upstream streams."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    data: bytes
    event: bytes | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back every event completed by them."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk
        held = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):
                # A CRLF may be split across reads: keep the CR until its LF arrives.
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop() + held
        events = []
        for block in blocks:
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (what a broken stream left half-sent)."""
        return self._buffer


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return SSEEvent(block[6:])  # the common case: one data line
    data: list[bytes] = []
    name = None
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue  # comments are keep-alives
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    if not data:
        return None
    return SSEEvent(b"\n".join(data), name)
