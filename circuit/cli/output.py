"""What the CLI prints and how it ends, shared by every command group.

For scripts: `emit_json` / `emit_json_line` / `emit_csv` write plain text to stdout, never through
Rich, so nothing wraps, highlights or colours it. For people: `out()` is a Rich console that is
plain when stdout is not a terminal (no ANSI codes) and honours NO_COLOR. Errors are one line on
stderr, raised as `fail(...)`.

Exit codes (documented in `circuit --help`):
    0  ok
    1  a check failed (`usage --fail-over`, `breaker status --fail-if-open`, `config check`)
    2  usage error or bad input: unknown key, malformed date, missing database
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from circuit import money

#: The `--json` flag every read command takes.
JsonFlag = Annotated[bool, typer.Option("--json", metavar="", help="Print JSON for scripts.")]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2

#: Width for Rich output that goes to a pipe or file, where Rich would otherwise assume 80
#: columns and fold table cells.
_PIPE_WIDTH = 160


def out() -> Console:
    """A console on the current stdout (looked up per call, so test runners can swap it)."""
    console = Console(highlight=False)
    if unmeasured(console):
        console.width = _PIPE_WIDTH
    return console


def unmeasured(console: Console) -> bool:
    """Whether the console has no width of its own: a pipe or a file (not a terminal) with
    no COLUMNS set, where Rich would assume 80."""
    return not console.is_terminal and "COLUMNS" not in os.environ


def err() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `error: message` as one line on stderr and return the Exit to raise."""
    err().print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def note(message: str) -> None:
    """A remark for the person at the terminal, on stderr so it never mixes into data."""
    err().print(escape(message), style="dim", soft_wrap=True)


def emit_json(data: Any) -> None:
    """One JSON document on stdout, indented; the shapes are documented per command."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def emit_json_line(data: Any) -> None:
    """One compact JSON object per line (JSON Lines), flushed at once for followers."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                                default=str) + "\n")
    sys.stdout.flush()


def emit_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    sys.stdout.flush()


def table(title: str) -> Table:
    """The house table: a light frame that leaves room for the data in 80 columns."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                 pad_edge=False, collapse_padding=True)


# -- formats for people ------------------------------------------------------------------------

def usd(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    if abs(value) >= 1000:
        return f"${value:,.0f}"
    return f"${value:,.6f}" if abs(value) < 1 else f"${value:,.2f}"


#: What a cost cell shows for usage whose model has no price: never $0, which would be a lie.
UNPRICED = "unpriced"


def cost(micros: int, unpriced: int = 0) -> str:
    """A total cost for people: `unpriced` when all of the usage lacks a price, `$x*` when part
    of it does (a table says what the * means below it)."""
    if unpriced and not micros:
        return UNPRICED
    shown = usd(money.usd(micros))
    return f"{shown}*" if unpriced else shown


def record_cost(record: dict) -> str:
    """The cost of one request record: `unpriced` when it used tokens of a model with no
    price, `-` when it used none (refused before any call)."""
    if record["cost_micros"] is not None:
        return usd(money.usd(record["cost_micros"]))
    used = (record["tokens_input"] or 0) + (record["tokens_output"] or 0)
    return UNPRICED if used else "-"


def unpriced_note(requests: int, models: Iterable[str] = ()) -> str:
    """The footnote under a table with unpriced usage: what is left out, and how to price it."""
    models = sorted(models)
    where = ", ".join(f'[prices."{m}"]' for m in models) or '[prices."MODEL"]'
    return (f"* {requests:,} request(s) used a model with no price; their cost is not in the "
            f"totals. Add {where} in circuit.toml with `input` and `output` in USD per million "
            "tokens" + ("." if models else " (`circuit usage --by model` names the models)."))


def micros_usd(micros: int | None) -> float | None:
    return None if micros is None else round(money.usd(micros), 6)


def millis(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.3g}s"
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def compact(value: int | None) -> str:
    """A large count for people: 950, 12.3k, 4.56M, 1.2B."""
    if value is None:
        return "-"
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return str(value)


def when(timestamp: str | None) -> str:
    """`2026-11-26T03:44:56.123Z` as `2026-11-26 03:44:56` (UTC)."""
    if not timestamp:
        return "-"
    return timestamp.replace("T", " ")[:19]


#: Control characters but tab and newline: C0, DEL and C1.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(value: str) -> str:
    """`value` with its control characters shown as `\\xNN`: a model name, an upstream's
    message and a partial answer come from outside, and a terminal obeys the escape sequences
    in what it is given (clear the screen, retitle the window, rewrite the line)."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", value)


def text(value: object) -> str:
    """A value for a table cell, control characters shown (printable) and markup escaped;
    None as '-'."""
    return "-" if value is None else escape(printable(str(value)))


STATUS_STYLES = {"ok": "green", "failed": "red", "rejected": "yellow",
                 "client_disconnected": "magenta"}


def status(value: str | None) -> str:
    style = STATUS_STYLES.get(value or "", "")
    return f"[{style}]{text(value)}[/{style}]" if style else text(value)
