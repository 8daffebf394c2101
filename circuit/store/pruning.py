"""Retention's statements: delete old request rows, clear the text of rows kept longer, in
small batches, each its own short transaction (portable SQL, mixed into both stores).

A batch picks its rows by the timestamp index (`requests_with_content`, a partial index of rows
that still hold text, for clearing) and touches at most `limit` of them, so the write lock is
held for milliseconds, never for the whole backlog. On PostgreSQL the rows a batch picks are
locked with SKIP LOCKED: replicas pruning at once take different rows instead of queueing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Columns that hold prompt or answer text: the stream's partial answer, and the error
#: message (an upstream's error may quote the prompt). Codes, counts and costs stay.
CONTENT_COLUMNS = ("partial_text", "error_message")
_HAS_CONTENT = " OR ".join(f"{c} IS NOT NULL" for c in CONTENT_COLUMNS)


class PruningQueries:
    """Needs the host store's `_rows` (a read) and `_change` (a write; returns rows changed)."""

    #: What the batch's row choice adds to lock its rows (PostgreSQL: SKIP LOCKED).
    _pick_lock = ""

    def _rows(self, sql: str, params: Sequence[object]) -> Any:
        raise NotImplementedError

    def _change(self, sql: str, params: Sequence[object]) -> int:
        raise NotImplementedError

    def prune_requests(self, before: str, limit: int) -> int:
        """Delete up to `limit` of the oldest request rows from before `before`; how many."""
        return self._change(
            "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE timestamp < ? "
            f"ORDER BY timestamp LIMIT ?{self._pick_lock})", [before, limit])

    def clear_content(self, before: str, limit: int) -> int:
        """Clear the text of up to `limit` of the oldest rows from before `before` that have
        any; how many rows."""
        cleared = ", ".join(f"{c} = NULL" for c in CONTENT_COLUMNS)
        return self._change(
            f"UPDATE requests SET {cleared} WHERE id IN (SELECT id FROM requests "
            f"WHERE ({_HAS_CONTENT}) AND timestamp < ? ORDER BY timestamp "
            f"LIMIT ?{self._pick_lock})", [before, limit])

    def count_prunable(self, before: str | None, content_before: str | None) -> tuple[int, int]:
        """(rows older than `before`, rows kept whose text is older than `content_before`)."""
        rows = 0
        if before is not None:
            (rows,), = self._rows("SELECT COUNT(*) FROM requests WHERE timestamp < ?", [before])
        texts = 0
        if content_before is not None:
            where, params = f"({_HAS_CONTENT}) AND timestamp < ?", [content_before]
            if before is not None:
                where += " AND timestamp >= ?"
                params.append(before)
            (texts,), = self._rows(f"SELECT COUNT(*) FROM requests WHERE {where}", params)
        return int(rows), int(texts)
