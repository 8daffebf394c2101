"""`circuit breaker`: each provider's breaker in every running gateway process, its history,
and operator commands that reach the running gateways within a second."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from circuit.cli import output
from circuit.cli.context import reading, writing
from circuit.cli.help_format import CircuitTyper
from circuit.cli.output import EXIT_CHECK_FAILED, JsonFlag, emit_json, fail, text, when

app = CircuitTyper(help="Inspect and steer the circuit breakers of running gateways.",
                  no_args_is_help=True)

#: A gateway process saves its breakers at least every 2 s; older rows are from a stopped one.
LIVE_SECONDS = 10.0
_RANK = {"closed": 0, "half_open": 1, "open": 2}
_STYLE = {"closed": "green", "half_open": "yellow", "open": "red"}


def _age(timestamp: str) -> float:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.now(UTC) - moment).total_seconds()


def _state(value: str) -> str:
    style = _STYLE.get(value)
    return f"[{style}]{text(value)}[/{style}]" if style else text(value)


@app.command()
def status(
    ctx: typer.Context,
    as_json: JsonFlag = False,
    fail_if_open: Annotated[bool, typer.Option(
        "--fail-if-open", help="Exit 1 when any provider's breaker is open (a CI gate).")] = False,
    every: Annotated[bool, typer.Option(
        "--all", help="Include processes that stopped reporting (stale rows).")] = False,
) -> None:
    """Each provider's breaker: state, failures in the window, when it opened and will probe.

    One row per gateway process (host:pid); a provider is as open as its most open process.

    Example: circuit breaker status --fail-if-open
    """
    with reading(ctx) as store:
        rows = store.breaker_states()
    holders = []
    for row in rows:
        live = _age(row.updated_at) <= LIVE_SECONDS
        if live or every:
            holders.append({"provider": row.provider, "holder": row.holder, "state": row.state,
                            "opened_at": row.opened_at, "probe_at": row.probe_at,
                            "calls_in_window": row.calls_in_window,
                            "failures_in_window": row.failures_in_window,
                            "last_failure": row.last_failure,
                            "updated_at": row.updated_at, "live": live})
    providers: dict[str, dict] = {}
    for holder in holders:
        entry = providers.setdefault(holder["provider"], {
            "provider": holder["provider"], "state": "closed", "holders": []})
        entry["holders"].append(holder)
        if holder["live"] and _RANK.get(holder["state"], 0) > _RANK[entry["state"]]:
            entry["state"] = holder["state"]
    any_open = any(p["state"] == "open" for p in providers.values())
    if as_json:
        emit_json({"providers": list(providers.values()), "any_open": any_open})
    elif not holders:
        output.note("No running gateway has reported its breakers (start one with "
                    "`circuit serve`; use --all for stopped ones).")
    else:
        grid = output.table("Circuit breakers")
        for column in ("provider", "state", "process", "failures", "opened", "probes at",
                       "last failure"):
            grid.add_column(column)
        for holder in holders:
            state = _state(holder["state"]) + ("" if holder["live"] else " (stale)")
            grid.add_row(text(holder["provider"]), state, text(holder["holder"]),
                         f"{holder['failures_in_window']}/{holder['calls_in_window']}",
                         when(holder["opened_at"]), when(holder["probe_at"]),
                         text(holder["last_failure"] or "-"))
        output.out().print(grid)
    if fail_if_open and any_open:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command()
def history(
    ctx: typer.Context,
    provider: Annotated[str | None, typer.Argument(
        help="Only this provider's changes.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", metavar="N", min=1,
                                       help="How many changes, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Every breaker state change, newest first: provider, from, to, reason, time.

    Example: circuit breaker history openai -n 20
    """
    with reading(ctx) as store:
        events = store.breaker_events(provider, limit)
    if as_json:
        emit_json({"events": [{"provider": e.provider, "holder": e.holder,
                               "from": e.from_state, "to": e.to_state, "reason": e.reason,
                               "at": e.at} for e in events]})
        return
    if not events:
        output.note("No breaker has changed state yet.")
        return
    grid = output.table("Breaker history")
    for column in ("time", "provider", "change", "reason", "process"):
        grid.add_column(column)
    for e in events:
        grid.add_row(when(e.at), text(e.provider),
                     f"{_state(e.from_state)} → {_state(e.to_state)}", text(e.reason),
                     text(e.holder))
    output.out().print(grid)


def _command(ctx: typer.Context, provider: str, action: str, as_json: bool) -> None:
    with writing(ctx) as store:
        known = {row.provider for row in store.breaker_states()}
        if known and provider not in known:
            raise fail(f"unknown provider {provider!r} (known: {', '.join(sorted(known))})")
        command_id = store.add_breaker_command(provider, action)
    if as_json:
        emit_json({"provider": provider, "action": action, "command_id": command_id})
    else:
        output.out().print(f"Breaker of [bold]{text(provider)}[/bold]: {action} sent; running "
                           "gateways apply it within a second.")


@app.command()
def reset(ctx: typer.Context,
          provider: Annotated[str, typer.Argument(help="The provider, e.g. openai.")],
          as_json: JsonFlag = False) -> None:
    """Close a provider's breaker in every running gateway (after a fix upstream).

    Example: circuit breaker reset openai
    """
    _command(ctx, provider, "reset", as_json)


@app.command("open")
def open_(ctx: typer.Context,
          provider: Annotated[str, typer.Argument(help="The provider, e.g. openai.")],
          as_json: JsonFlag = False) -> None:
    """Open a provider's breaker in every running gateway: its calls stop at once (503, or
    the next target of a route) until the cool-down lets trial calls through, or a reset.

    Example: circuit breaker open openai
    """
    _command(ctx, provider, "open", as_json)
