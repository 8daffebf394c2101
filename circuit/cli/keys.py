"""`circuit keys`: create, list, change and revoke client keys.

A running gateway notices every change here within a second (it polls the keys table's
fingerprint), so nothing needs a restart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import typer

from circuit.cli import output
from circuit.cli.context import reading, settings, writing
from circuit.cli.help_format import CircuitTyper
from circuit.cli.output import JsonFlag, emit_json, fail, text
from circuit.keys import (
    NO_DAILY_LIMIT,
    InvalidKeyName,
    check_key_name,
    config_key_names,
    create_key,
    display_prefix,
    free_name,
)
from circuit.store.base import KeyExists, KeyNotFound, Store
from circuit.store.records import KeyRow
from circuit.store.reports import UsageRow, day_start, timestamp_text

app = CircuitTyper(
    help="Create, list, change and revoke client keys.\n\n"
         "Changes reach a running gateway within a second, without a restart.",
    no_args_is_help=True,
)

#: Words that clear a limit, so the gateway default (daily) or no limit (rpm, tpm) applies.
CLEAR_WORDS = ("off", "none", "default")

NameArg = Annotated[str, typer.Argument(metavar="NAME", show_default=False,
                                        help="The key's name, e.g. `ci` or `team-search`.")]


# -- parsing ------------------------------------------------------------------------------------

def check_name(name: str) -> str:
    try:
        return check_key_name(name)
    except InvalidKeyName as exc:
        raise fail(str(exc)) from None


def parse_usd(option: str, value: str) -> float | None:
    """A daily limit in USD, None for one of CLEAR_WORDS, NO_DAILY_LIMIT for `unlimited`."""
    if value.strip().lower() in CLEAR_WORDS:
        return None
    if value.strip().lower() == "unlimited":
        return NO_DAILY_LIMIT
    try:
        number = float(value.strip().lstrip("$"))
    except ValueError:
        raise fail(f"{option} must be an amount in USD, `off` or `unlimited`, got {value!r}") \
            from None
    if not math.isfinite(number) or number < 0:
        raise fail(f"{option} must be an amount in USD >= 0, `off` or `unlimited`, "
                   f"got {value!r}")
    return number


def parse_rate(option: str, value: str) -> int | None:
    """A per-minute limit, or None for one of CLEAR_WORDS."""
    if value.strip().lower() in CLEAR_WORDS:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        raise fail(f"{option} must be a whole number or `off`, got {value!r}") from None
    if number < 1:
        raise fail(f"{option} must be at least 1 (or `off`), got {value!r}")
    return number


# -- shapes ---------------------------------------------------------------------------------------

def key_json(row: KeyRow, spend: UsageRow | None = None, *, source: str = "table") -> dict:
    """A key as `keys list --json` (and `keys set/revoke --json`) prints it."""
    data = {"name": row.name, "source": source, "key_prefix": row.key_prefix,
            "daily_limit_usd": row.daily_limit_usd, "rpm": row.rpm, "tpm": row.tpm,
            "created_at": row.created_at or None, "revoked_at": row.revoked_at,
            "active": row.revoked_at is None}
    if spend is not None:
        data["spend_today_usd"] = output.micros_usd(spend.cost_micros)
        data["unpriced_today"] = spend.unpriced
    return data


def config_rows(secrets: Sequence[str]) -> list[KeyRow]:
    """The keys of CIRCUIT_API_KEYS as rows: their names and prefixes, never the keys."""
    return [KeyRow(name=name, key_hash="", key_prefix=display_prefix(secret))
            for name, secret in zip(config_key_names(secrets), secrets, strict=True)]


def find_key(store: Store, name: str) -> KeyRow:
    for row in store.load_keys():
        if row.name == name:
            return row
    raise fail(f"no key named {name!r}; see `circuit keys list`")


def today() -> str:
    return day_start(datetime.now(UTC).date())


# -- commands -------------------------------------------------------------------------------------

@app.command()
def add(
    ctx: typer.Context,
    name: NameArg,
    daily_limit: Annotated[str | None, typer.Option(
        "--daily-limit", metavar="USD", show_default=False,
        help="Daily spend limit in USD (UTC day). Default: the gateway's "
             "CIRCUIT_DAILY_USD_LIMIT.")] = None,
    rpm: Annotated[str | None, typer.Option(
        "--rpm", metavar="N", show_default=False,
        help="Requests per minute. Default: the gateway's default (none).")] = None,
    tpm: Annotated[str | None, typer.Option(
        "--tpm", metavar="N", show_default=False,
        help="Tokens per minute. Default: the gateway's default (none).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key and print its secret, once: only a hash is stored.

    Creates the database if there is none yet. JSON: `{"name": ..., "key": ...}`.

    Examples:

    * `circuit keys add ci --daily-limit 5 --rpm 60`
    * `export CIRCUIT_KEY=$(circuit keys add ci --json | jq -r .key)`
    """
    check_name(name)
    limits = {"daily_limit_usd": parse_usd("--daily-limit", daily_limit) if daily_limit else None,
              "rpm": parse_rate("--rpm", rpm) if rpm else None,
              "tpm": parse_rate("--tpm", tpm) if tpm else None}
    with writing(ctx) as store:
        try:
            secret = create_key(store, name, **limits)
        except KeyExists:
            rows = store.load_keys()
            revoked = any(row.name == name and row.revoked_at for row in rows)
            other = free_name(name, (row.name for row in rows))
            raise fail(f"a key named {name!r} exists already{' (revoked)' if revoked else ''}; "
                       "names are never reused, so its records and spend stay attributable to "
                       f"it: pick another, e.g. `circuit keys add {other}`") from None
    if as_json:
        emit_json({"name": name, "key": secret})
        return
    console = output.out()
    console.print(f"Created key [bold]{text(name)}[/bold]. Copy it now; it is not shown "
                  "again:\n", soft_wrap=True)
    console.print(f"    {secret}\n", soft_wrap=True, markup=False)
    console.print("A gateway running on this database accepts it within a second.", style="dim")


@app.command("list")
def list_keys(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List keys with their limits and today's spend (UTC day), revoked ones included, and the
    keys of CIRCUIT_API_KEYS (`config-1`, …; their prefix only).

    JSON: `{"day", "default_daily_limit_usd", "keys": [{"name", "source", "key_prefix",
    "daily_limit_usd", "rpm", "tpm", "spend_today_usd", "unpriced_today", "created_at",
    "revoked_at", "active"}]}`; `source` is `table` or `config`; a null limit means the
    gateway default applies; `unpriced_today` counts requests whose model has no price (not
    in the spend).

    Examples:

    * `circuit keys list`
    * `circuit keys list --json | jq -r '.keys[] | select(.active) | .name'`
    """
    config = settings(ctx)
    with reading(ctx) as store:
        rows = sorted(store.load_keys(), key=lambda r: r.name)
        since = today()
        spend = {row.group: row for row in store.usage(since=since, by="key").groups}
    keys = [(row, "table") for row in rows] + [(row, "config")
                                                for row in config_rows(config.api_keys)]
    none = UsageRow(None, 0, 0, 0, 0, 0, 0, 0, None, None)
    if as_json:
        emit_json({"day": since[:10], "default_daily_limit_usd": config.daily_usd_limit,
                   "keys": [key_json(row, spend.get(row.name, none), source=source)
                            for row, source in keys]})
        return
    console = output.out()
    if not keys:
        console.print("No keys yet. Create one with `circuit keys add NAME`.", markup=False)
        return
    table = output.table(f"Keys (spend on {since[:10]}, UTC)")
    table.add_column("Name", overflow="fold")
    table.add_column("Prefix", no_wrap=True)
    for column in ("Daily limit", "Spent today", "RPM", "TPM"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    table.add_column("Status")
    uses_default = False
    unpriced = 0
    for row, source in keys:
        used = spend.get(row.name, none)
        unpriced += used.unpriced
        limit = row.daily_limit_usd if row.daily_limit_usd is not None else \
            config.daily_usd_limit
        if limit is not None and limit < 0:
            limit = None  # exempt from the default
        limit_text = output.usd(limit) if limit is not None else (
            "unlimited" if row.daily_limit_usd is not None else "none")
        if row.daily_limit_usd is None:
            limit_text = f"[dim]{limit_text}†[/dim]"
            uses_default = True
        spent_text = output.cost(used.cost_micros, used.unpriced)
        if limit is not None and used.cost_usd >= limit:
            spent_text = f"[red]{spent_text}[/red]"
        if source == "config":
            state = "[green]active[/green] (CIRCUIT_API_KEYS)"
        elif row.revoked_at is None:
            state = "[green]active[/green]"
        else:
            state = f"[red]revoked[/red] {output.when(row.revoked_at)[:10]}"
        table.add_row(text(row.name), text(row.key_prefix) + "…", limit_text, spent_text,
                      output.count(row.rpm), output.count(row.tpm),
                      output.when(row.created_at)[:10] if row.created_at else "-", state)
    console.print(table)
    if uses_default:
        console.print("[dim]† no limit of its own: the gateway default "
                      "(CIRCUIT_DAILY_USD_LIMIT) applies.[/dim]", soft_wrap=True)
    if unpriced:
        console.print(output.unpriced_note(unpriced), style="yellow", soft_wrap=True,
                      markup=False)


@app.command("set")
def set_limits(
    ctx: typer.Context,
    name: NameArg,
    daily_limit: Annotated[str | None, typer.Option(
        "--daily-limit", metavar="USD|off|unlimited", show_default=False,
        help="Daily spend limit in USD; `off` clears it, so the gateway default "
             "applies; `unlimited` exempts the key from the default.")] = None,
    rpm: Annotated[str | None, typer.Option(
        "--rpm", metavar="N|off", show_default=False,
        help="Requests per minute; `off` clears it.")] = None,
    tpm: Annotated[str | None, typer.Option(
        "--tpm", metavar="N|off", show_default=False,
        help="Tokens per minute; `off` clears it.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a key's limits; a running gateway applies them within a second.

    JSON: the key, as one item of `keys list --json` (without spend).

    Examples:

    * `circuit keys set ci --daily-limit 20`
    * `circuit keys set ci --rpm off --tpm 100000`
    """
    changes: dict[str, object] = {}
    if daily_limit is not None:
        changes["daily_limit_usd"] = parse_usd("--daily-limit", daily_limit)
    if rpm is not None:
        changes["rpm"] = parse_rate("--rpm", rpm)
    if tpm is not None:
        changes["tpm"] = parse_rate("--tpm", tpm)
    if not changes:
        raise fail("nothing to change: give --daily-limit, --rpm and/or --tpm")
    with reading(ctx) as store:
        try:
            row = store.update_key(name, **changes)
        except KeyNotFound:
            raise fail(f"no key named {name!r}; see `circuit keys list`") from None
    if as_json:
        emit_json(key_json(row))
        return
    console = output.out()
    for column, label in (("daily_limit_usd", "daily limit"), ("rpm", "rpm"), ("tpm", "tpm")):
        if column not in changes:
            continue
        value = changes[column]
        if value is None:
            shown = "cleared (the gateway default applies)" if column == "daily_limit_usd" \
                else "cleared (no limit)"
        elif column == "daily_limit_usd" and value < 0:
            shown = "unlimited (exempt from the gateway default)"
        else:
            shown = output.usd(value) if column == "daily_limit_usd" else f"{value:,}/min"
        console.print(f"{text(name)}: {label} {shown}", soft_wrap=True)


@app.command()
def revoke(ctx: typer.Context, name: NameArg, as_json: JsonFlag = False) -> None:
    """Revoke a key: a running gateway answers it with 401 within a second.

    The key stays listed (and its usage reported) as revoked. Revoking a revoked key changes
    nothing. JSON: the key, as one item of `keys list --json` (without spend).

    Examples:

    * `circuit keys revoke ci`
    """
    with reading(ctx) as store:
        row = find_key(store, name)
        already = row.revoked_at is not None
        if not already:
            try:
                row = store.update_key(name, revoked_at=timestamp_text(datetime.now(UTC)))
            except KeyNotFound:
                raise fail(f"no key named {name!r}; see `circuit keys list`") from None
    if as_json:
        emit_json(key_json(row))
    elif already:
        output.out().print(f"{text(name)} was already revoked ({output.when(row.revoked_at)} "
                           "UTC).", soft_wrap=True)
    else:
        output.out().print(f"Revoked {text(name)}. A running gateway refuses it within a "
                           "second.", soft_wrap=True)
