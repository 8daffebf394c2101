"""RecordJournal: request records the database cannot take wait on disk, never only in memory.

When the database cannot be written (a full disk, another process holding the write lock, an
unreachable PostgreSQL) the record writer keeps a bounded batch in memory and spills the rest
here: one append-only JSON-lines file per process (`host-pid-start.jsonl`, locked with flock
while it is written), in a folder beside the database. When the database takes writes again —
at the latest on the next start — every file no live process holds is replayed into it and
deleted. Replay is exactly-once: each chunk's rows and the file's replayed byte offset commit
in one transaction (`journal_replays`), so a crash mid-replay resumes where it stopped.

A full disk would stop the journal too, so the folder keeps a reserve: a file of
`reserve_bytes` allocated at start and released the moment a spill meets ENOSPC, leaving room
for the records of the moment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import IO

import orjson

from circuit.store.records import REQUEST_COLUMNS, RequestRecord

log = logging.getLogger("circuit.journal")

_STORED = [f.name for f in fields(RequestRecord) if f.name in REQUEST_COLUMNS]
_RESERVE = "reserve"
#: Records inserted per replay transaction.
REPLAY_CHUNK = 1000
DEFAULT_RESERVE_BYTES = 16 * 1024 * 1024

#: store.insert_replayed(records, journal file name, byte offset after them)
ReplaySink = Callable[[Sequence[RequestRecord], str, int], None]
OffsetSource = Callable[[str], int]


class JournalFull(OSError):
    """Not even the journal could take the records (the disk is full past the reserve)."""


class RecordJournal:
    """Spills records to disk and replays them into the store; used by the writer thread."""

    def __init__(self, directory: str | os.PathLike[str],
                 reserve_bytes: int = DEFAULT_RESERVE_BYTES) -> None:
        self.directory = Path(directory)
        self.reserve_bytes = reserve_bytes
        self._segment: IO[bytes] | None = None
        self._segment_name: str | None = None

    # -- spilling ------------------------------------------------------------------------------

    def keep_reserve(self) -> None:
        """Allocate the reserve file if it is missing (quietly: the disk may be full)."""
        if self.reserve_bytes <= 0:
            return
        path = self.directory / _RESERVE
        with contextlib.suppress(OSError):
            self.directory.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size >= self.reserve_bytes:
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            except OSError:
                os.close(fd)
                path.unlink(missing_ok=True)
                return
            os.close(fd)

    def spill(self, records: Sequence[RequestRecord]) -> None:
        """Append `records` durably (written and fsynced), or raise JournalFull."""
        data = b"".join(orjson.dumps({name: getattr(r, name) for name in _STORED}) + b"\n"
                        for r in records)
        for attempt in range(2):
            try:
                segment = self._open_segment()
                segment.write(data)
                segment.flush()
                os.fsync(segment.fileno())
                return
            except OSError as exc:
                self._drop_partial()
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or attempt:
                    raise JournalFull(exc.errno, f"cannot journal records: {exc}") from None
                self._release_reserve()

    def _open_segment(self) -> IO[bytes]:
        if self._segment is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}.jsonl"
            segment = open(self.directory / name, "ab")  # noqa: SIM115 - held across calls
            fcntl.flock(segment.fileno(), fcntl.LOCK_EX)
            self._segment, self._segment_name = segment, name
        return self._segment

    def _drop_partial(self) -> None:
        # A failed write may leave half a line: cut the file back to whole lines.
        if self._segment is None:
            return
        with contextlib.suppress(OSError):
            self._segment.flush()
        with contextlib.suppress(OSError):
            path = self.directory / (self._segment_name or "")
            data = path.read_bytes()
            whole = data[:data.rfind(b"\n") + 1]
            if len(whole) != len(data):
                os.truncate(path, len(whole))

    def _release_reserve(self) -> None:
        path = self.directory / _RESERVE
        if path.exists():
            log.warning("the disk is full: releasing the journal's %d-byte reserve for the "
                        "records that cannot be written", self.reserve_bytes)
            path.unlink(missing_ok=True)

    def close_segment(self) -> None:
        """Close this process's file (it becomes replayable, by this process or another)."""
        if self._segment is not None:
            with contextlib.suppress(OSError):
                self._segment.close()
            self._segment = self._segment_name = None

    # -- replaying -----------------------------------------------------------------------------

    def pending_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.jsonl") if p.name != self._segment_name)

    def replay(self, insert: ReplaySink, offset_of: OffsetSource) -> int:
        """Insert every record of every file no live process holds; delete each file once
        it is in. Returns the number of records replayed. Store errors propagate (the caller
        tries again later); files stay until they are wholly in."""
        replayed = 0
        for path in self.pending_files():
            with _locked(path) as handle:
                if handle is None:
                    continue  # a live process is still writing it
                start = offset_of(path.name)
                for records, end in _chunks(handle, start):
                    insert(records, path.name, end)
                    replayed += len(records)
                path.unlink(missing_ok=True)
        return replayed


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[bytes] | None]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield handle
    finally:
        handle.close()


def _chunks(handle: IO[bytes], start: int) -> Iterator[tuple[list[RequestRecord], int]]:
    """Records from byte `start` on, REPLAY_CHUNK at a time, with the offset after each chunk.
    A last line without its newline (a process killed mid-write) is not a record."""
    handle.seek(start)
    offset, records = start, []
    for line in handle:
        if not line.endswith(b"\n"):
            break
        offset += len(line)
        try:
            records.append(RequestRecord(**orjson.loads(line)))
        except (orjson.JSONDecodeError, TypeError):
            log.error("skipping an unreadable journal line in %s at byte %d", handle.name,
                      offset - len(line))
        if len(records) >= REPLAY_CHUNK:
            yield records, offset
            records = []
    if records or offset != start:
        yield records, offset
