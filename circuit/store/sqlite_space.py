"""Keeping an SQLite file from growing: incremental vacuum and a bounded WAL.

Pruned rows leave free pages. SQLite reuses them for new rows whatever the mode, so a file
under retention stops growing once the first prune has run; with `auto_vacuum = INCREMENTAL`
it can also hand them back to the file system (`PRAGMA incremental_vacuum`), which the pruner
does after each round. That mode is set when a file is created; an existing file switches
only through a VACUUM, which rewrites it whole under an exclusive lock. So at start a file
still in the old mode is switched when it is small (below `vacuum_below_bytes`, 64 MiB by
default: well under a second); a bigger one is left as it is, with a warning, until an
operator runs `circuit requests prune --vacuum` (while the gateway is stopped: its writes
would wait for the whole rewrite). Until then it stays at its size, its free pages reused.

The WAL is checkpointed by SQLite every 1,000 pages; `journal_size_limit` truncates it after
a checkpoint, so a burst does not leave a large -wal file behind.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger("circuit.store")

#: Files up to this size are switched to incremental vacuum at start (one VACUUM).
VACUUM_BELOW_BYTES = 64 * 1024 * 1024
#: The -wal file is cut back to this when a write starts it over after a checkpoint (about
#: what SQLite's automatic checkpoint every 1,000 pages lets it reach).
WAL_LIMIT_BYTES = 4 * 1024 * 1024
#: Free pages handed back per step of `release`, each its own short write transaction.
RELEASE_PAGES = 2048
_INCREMENTAL = 2


def file_bytes(path: Path) -> int:
    """The database's size on disk, its WAL included."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
               if p.exists())


def use_incremental_vacuum(conn: sqlite3.Connection, path: Path,
                           vacuum_below_bytes: int = VACUUM_BELOW_BYTES) -> bool:
    """Put the file in `auto_vacuum = INCREMENTAL` mode where that is cheap: a new file at
    once, a small one with a VACUUM. Call outside a transaction, before the schema is made.
    Returns whether the file is in that mode now."""
    try:
        return _switch(conn, path, vacuum_below_bytes)
    except sqlite3.OperationalError as exc:  # another process holds the file: next start
        log.warning("switching %s to incremental vacuum failed (%s); will try at next start",
                    path, exc)
        return False


def _switch(conn: sqlite3.Connection, path: Path, vacuum_below_bytes: int) -> bool:
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL:
        return True
    fresh = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    if fresh:
        return True
    size = file_bytes(path)
    if size > vacuum_below_bytes:
        log.warning("%s (%.0f MB) predates incremental vacuum: pruned space is reused but "
                    "not given back; run `circuit requests prune --vacuum` once with the "
                    "gateway stopped to switch it", path, size / 1e6)
        return False
    conn.execute("VACUUM")
    return True


def release(conn: sqlite3.Connection, path: Path) -> int:
    """Hand free pages back to the file system, a bounded step at a time, and checkpoint the
    WAL without waiting for anyone; bytes the file shrank by."""
    before = file_bytes(path)
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL:
        while conn.execute("PRAGMA freelist_count").fetchone()[0]:
            conn.execute(f"PRAGMA incremental_vacuum({RELEASE_PAGES})").fetchall()
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return max(0, before - file_bytes(path))


def compact(conn: sqlite3.Connection, path: Path) -> int:
    """VACUUM the file into incremental-vacuum mode and truncate the WAL; bytes released."""
    before = file_bytes(path)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return max(0, before - file_bytes(path))
