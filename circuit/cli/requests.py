"""`circuit requests`: follow the request log live, and show one request whole."""

from __future__ import annotations

import time
from typing import Annotated, Literal, get_args

import typer
from rich.panel import Panel
from rich.table import Table

from circuit.cli import output
from circuit.cli.context import reading, settings
from circuit.cli.help_format import CircuitTyper
from circuit.cli.output import JsonFlag, emit_json, emit_json_line, fail, text
from circuit.cli.tail_layout import TailLayout
from circuit.cli.usage import check_key
from circuit.store.reports import STATUSES, record_dict

app = CircuitTyper(help="Follow the request log live, or show one request whole.",
                  no_args_is_help=True)

Status = Literal["ok", "failed", "rejected", "client_disconnected"]
assert set(get_args(Status)) == set(STATUSES)

#: How often `tail` looks for new records.
POLL_SECONDS = 0.3


@app.command()
def tail(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option(
        "--key", metavar="NAME", show_default=False, help="Only this key's requests.")] = None,
    status: Annotated[Status | None, typer.Option(
        "--status", metavar="STATUS", show_default=False,
        help="Only requests with this status: ok, failed, rejected or "
             "client_disconnected.")] = None,
    lines: Annotated[int, typer.Option(
        "--lines", "-n", metavar="N", min=0,
        help="How many recent requests to show first.")] = 10,
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow", metavar="",
        help="Keep following new requests until Ctrl-C.")] = True,
    as_json: Annotated[bool, typer.Option(
        "--json", metavar="",
        help="One JSON object per line (JSON Lines), each a record as `requests show "
             "--json` prints it.")] = False,
) -> None:
    """Follow requests as the gateway records them, one line each, until Ctrl-C.

    Shows the last 10 first, under a header line. Each line: date and time (UTC), request id,
    key, model, door (the API it came in by), provider, stream or json, status, tokens
    in→out, cost, time in the gateway,
    and the error code of a request that did not succeed; on a narrow terminal the columns
    that matter least are left out (`--json` has everything); piped, with COLUMNS unset,
    every column is printed. Ctrl-C ends it with exit code 0.

    Examples:

    * `circuit requests tail --status failed`
    * `circuit requests tail --key ci --no-follow -n 50`
    * `circuit requests tail --json | jq -c 'select(.cost_usd > 0.01)'`
    """
    api_keys = settings(ctx).api_keys
    console = output.out()
    # A pipe has no width: every column, the error code uncut; a terminal's lines are fitted.
    layout = TailLayout(None if output.unmeasured(console) else console.width)

    def show(record: dict) -> None:
        if as_json:
            emit_json_line(record)
        else:
            console.print(layout.line(record), soft_wrap=True)
            console.file.flush()

    with reading(ctx) as store:
        if key is not None:
            check_key(store, key, api_keys)
        if not as_json:
            console.print(layout.header(), soft_wrap=True)
        last = store.last_request_id()
        for record in store.latest_requests(lines, up_to_id=last, key=key, status=status) \
                if lines else ():
            show(record)
        if not follow:
            return
        try:
            while True:
                time.sleep(POLL_SECONDS)
                newest = store.last_request_id()
                if newest > last:
                    for record in store.requests_between(last, newest, key=key, status=status):
                        show(record)
                    last = newest
        except KeyboardInterrupt:
            return


@app.command()
def show(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID", show_default=False,
                                              help="The x-request-id of the request.")],
    as_json: JsonFlag = False,
) -> None:
    """Show everything recorded about one request, the partial text of a broken stream
    included.

    A client may reuse a request id; then every record with it is shown (JSON: the newest,
    with a note on stderr). JSON: the record, with the columns of the requests table: `id,
    request_id, timestamp, key_name, provider, model, upstream_model, stream, status_code,
    status, error_code, error_message, tokens_input, tokens_output, tokens_cached,
    cost_micros, cost_usd, usage_source, finish_reason, latency_ms, ttfb_ms, attempts,
    partial_text`.

    Examples:

    * `circuit requests show req_3f2a9c`
    * `circuit requests show req_3f2a9c --json | jq -r .partial_text`
    """
    with reading(ctx) as store:
        records = [record_dict(r) for r in store.find_requests(request_id)]
    if not records:
        raise fail(f"no request with id {request_id!r}; see `circuit requests tail`")
    if as_json:
        emit_json(records[-1])
        if len(records) > 1:
            output.note(f"{len(records)} records share this request id; printed the newest "
                        f"(id {records[-1]['id']}).")
        return
    console = output.out()
    for record in records:
        table = Table(show_header=False, box=None, title=f"Request {text(request_id)}",
                      title_justify="left", title_style="bold")
        table.add_column("field", style="dim", no_wrap=True)
        table.add_column("value")
        for name, value in record.items():
            if name == "partial_text":
                continue
            if name == "status":
                shown = output.status(value)
            elif name == "cost_micros":
                continue
            elif name == "cost_usd":
                shown = output.record_cost(record)
            elif name == "stream":
                shown = "yes" if value else "no"
            elif name in ("latency_ms", "ttfb_ms"):
                shown = output.millis(value)
            else:
                shown = text(value)
            table.add_row(name, shown)
        console.print(table)
        if record.get("partial_text") is not None:
            console.print(Panel(text(record["partial_text"]) or "[dim](empty)[/dim]",
                                title="partial text (the stream broke here)",
                                title_align="left", border_style="yellow", expand=False))
