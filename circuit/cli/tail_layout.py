"""The columns of `circuit requests tail`, fitted to the terminal's width as `ls` does.

Every column has a fixed width, so lines printed as they arrive stay aligned under the one
header line; a value too long for its column is cut with `…`. On a narrow terminal the columns
that matter least are left out, so no line wraps: at 80 columns time, request id, key, model and
status remain; with more room come the door (api, and the upstream wire when it differs), cost,
tokens, provider, stream, latency, the date, and the error code in whatever width is left.
Output with no width (a pipe, COLUMNS unset) gets every column and every value whole: a long
one pushes the rest of its line along rather than lose characters (a piped request id must
paste into `requests show`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from circuit.cli import output

GAP = "  "
#: Room the error code needs to be worth a column.
_ERROR_MIN = 10


@dataclass(frozen=True)
class Column:
    heading: str
    width: int
    cell: Callable[[dict], str]
    right: bool = False  # aligned right (numbers)


def _status(record: dict) -> str:
    state = record["status"] or "-"
    return "disconnected" if state == "client_disconnected" else state


def _door(record: dict) -> str:
    """The door, and the wire that went upstream when it was another (`messages→chat`)."""
    api, upstream = record.get("api") or "chat", record.get("upstream_api")
    return api if upstream in (None, api) else f"{api}→{upstream}"


def _tokens(record: dict) -> str:
    return f"{record['tokens_input'] or 0:,}→{record['tokens_output'] or 0:,}"


#: In the order they are shown.
COLUMNS = {
    "date": Column("DATE", 10, lambda r: output.when(r["timestamp"])[:10]),
    "time": Column("TIME", 8, lambda r: output.when(r["timestamp"])[11:19]),
    "id": Column("REQUEST ID", 26, lambda r: r["request_id"] or "-"),
    "key": Column("KEY", 10, lambda r: r["key_name"] or "-"),
    "model": Column("MODEL", 14, lambda r: r["model"] or "-"),
    "door": Column("DOOR", 14, _door),
    "provider": Column("PROVIDER", 9, lambda r: r["provider"] or "-"),
    "stream": Column("MODE", 6, lambda r: "stream" if r["stream"] else "json"),
    "status": Column("STATUS", 12, _status),
    "tokens": Column("TOKENS", 13, _tokens, right=True),
    "cost": Column("COST", 9, output.record_cost, right=True),
    "latency": Column("TIME IN", 7, lambda r: output.millis(r["latency_ms"]), right=True),
}
#: Which columns stay when room is short, the most needed first.
KEPT_FIRST = ("id", "status", "time", "model", "key", "door", "cost", "tokens", "provider",
              "stream", "latency", "date")


def _fit(text: str, width: int, right: bool = False, cut: bool = True) -> str:
    if cut and len(text) > width:
        text = text[: width - 1] + "…"
    return text.rjust(width) if right else text.ljust(width)


class TailLayout:
    """The columns that fit `width` (None: no width, every column), the header line, and one
    line per record (Rich markup)."""

    def __init__(self, width: int | None) -> None:
        #: The error code's width: 0 for none, None for the whole code.
        self.error_width: int | None
        #: Values cut to their column's width (not when there is no width).
        self.cut = width is not None
        if width is None:
            self.columns = list(COLUMNS)
            self.error_width = None
            return
        chosen: set[str] = set()
        used = -len(GAP)
        for name in KEPT_FIRST:
            needed = len(GAP) + COLUMNS[name].width
            if used + needed <= width:
                chosen.add(name)
                used += needed
        self.columns = [name for name in COLUMNS if name in chosen]
        room = width - used - len(GAP)
        self.error_width = room if room >= _ERROR_MIN else 0

    def header(self) -> str:
        parts = [_fit(COLUMNS[n].heading, COLUMNS[n].width, COLUMNS[n].right)
                 for n in self.columns]
        if self.error_width != 0:
            parts.append("ERROR")
        return f"[bold]{output.text(GAP.join(parts).rstrip())}[/bold]"

    def line(self, record: dict) -> str:
        parts = []
        for name in self.columns:
            column = COLUMNS[name]
            cell = output.text(_fit(column.cell(record), column.width, column.right,
                                    self.cut))
            if name == "status":
                style = output.STATUS_STYLES.get(record["status"] or "")
                cell = f"[{style}]{cell}[/{style}]" if style else cell
            parts.append(cell)
        if self.error_width != 0 and record["error_code"]:
            error = record["error_code"]
            if self.error_width is not None:
                error = _fit(error, self.error_width).rstrip()
            parts.append(f"[red]{output.text(error)}[/red]")
        return GAP.join(parts).rstrip()
