"""An incremental Server-Sent Events decoder for upstream streams, with a bound on one event."""

from __future__ import annotations

from dataclasses import dataclass

from circuit.wire import StreamEvent


@dataclass(slots=True)
class SSEEvent:
    data: bytes
    event: bytes | None = None


class FrameReader:
    """`Transform.feed_read` made of the transform's own `feed`: each event of a read in turn,
    up to the stream's end or its error event. A transform whose events are mostly of one shape
    writes its own, reading that shape inline."""

    __slots__ = ()
    done: bool
    failed: bool

    def feed(self, data: bytes, name: bytes | None = None) -> list[StreamEvent]:
        raise NotImplementedError

    def feed_read(self, frames: list[SSEEvent], out: list[StreamEvent]) -> None:
        for frame in frames:
            out.extend(self.feed(frame.data, frame.event))
            if self.done or self.failed:
                return


class SSEDecoder:
    """Feed bytes as they arrive; get back every event completed by them.

    An event not yet ended is kept as the reads that brought it, joined once when it ends, so
    a large event costs its size once (not once per read). An event past `max_event_bytes`
    sets `too_large` instead of taking memory: what it held is dropped, the events before it
    are returned, and nothing more is decoded."""

    __slots__ = ("_parts", "_size", "_held", "_max", "too_large")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._held = b""  # a CR ending the last read: its LF may open the next one
        self._max = max_event_bytes
        self.too_large = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self.too_large:
            return []
        if self._held:
            chunk, self._held = self._held + chunk, b""
        if chunk.partition(b"\r")[1]:  # not `in`: see upstream_errors.quotes_secret
            if chunk.endswith(b"\r"):
                chunk, self._held = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        # An event ends at a blank line, which may straddle the previous read and this one.
        lead = 1 if self._parts and self._parts[-1].endswith(b"\n") and chunk[:1] == b"\n" else 0
        end = -1 if lead else chunk.find(b"\n\n")
        if end < 0 and not lead:
            self._keep(chunk)
            return []
        pending = b"".join(self._parts)
        first = pending[:-1] if lead else pending + chunk[:end]
        blocks = chunk[(1 if lead else end + 2):].split(b"\n\n")
        self._parts, self._size = [], 0
        rest = blocks.pop()
        events = []
        limit = self._max
        for block in (first, *blocks):
            if limit is not None and len(block) > limit:
                self._over(len(block))
                return events
            # The common frames read here, not in a call a block: one split, prefix slices
            # (bytes' startswith, find and `in` parse their arguments the slow way in CPython
            # 3.11, ~1,000 instructions a call; split and slicing do not).
            lines = block.split(b"\n")
            count = len(lines)
            if count == 1 and block[:6] == b"data: ":
                events.append(SSEEvent(block[6:]))  # one data line (OpenAI chat)
                continue
            if count == 2:
                # One event line, then one data line (Anthropic's, Responses').
                head, data_line = lines
                if head[:7] == b"event: " and data_line[:6] == b"data: ":
                    events.append(SSEEvent(data_line[6:], head[7:]))
                    continue
            event = _parse_lines(lines)
            if event is not None:
                events.append(event)
        self._keep(rest)
        return events

    def _keep(self, part: bytes) -> None:
        if part:
            self._parts.append(part)
            self._size += len(part)
            self._over(self._size - part.endswith(b"\n"))  # not the terminator's first byte

    def _over(self, size: int) -> bool:
        if self._max is None or size <= self._max:
            return False
        self.too_large = True
        self._parts, self._size, self._held = [], 0, b""  # dropped now, not at the end
        return True

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (what a broken stream left half-sent)."""
        return b"".join(self._parts) + self._held


def _parse_lines(lines: list[bytes]) -> SSEEvent | None:
    """An event from its lines, whatever their fields (`data:` lines joined, comments left)."""
    data: list[bytes] = []
    name = None
    for line in lines:
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
