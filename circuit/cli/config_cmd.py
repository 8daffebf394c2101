"""`circuit config`: write a commented circuit.toml, show the effective settings, check them."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Annotated, Any

import tomli_w
import typer
from rich.table import Table

from circuit.cli import output
from circuit.cli.context import CONFIG_KEY, DB_KEY
from circuit.cli.help_format import CircuitTyper
from circuit.cli.output import EXIT_CHECK_FAILED, JsonFlag, emit_json, fail, text
from circuit.config import ConfigError, Settings, declared_settings, load_settings
from circuit.settings_reference import accepts_off, settings_table

app = CircuitTyper(help="Write, show and check the gateway's configuration.",
                  no_args_is_help=True)

#: Settings that make no sense inside the file itself.
_NOT_IN_FILE = {"config_path"}

HEADER = """\
# circuit.toml: settings for the Circuit gateway and the `circuit` command.
#
# Precedence, lowest first: built-in defaults < this file < .env < environment < command-line
# flags. Each setting names its environment variable. Delete a line to use the default;
# `circuit config show` prints what is in effect and where each value came from, and
# `circuit config check` validates it.
"""

PRICES_EXAMPLE = """\
# Prices in USD per million tokens, for models Circuit does not know or to override its own.
# `input` and `output` are required; `cached_input` and `cache_write` default to `input`.
# [prices."my-model"]
# input = 0.15
# output = 0.60
# cached_input = 0.075
"""


def _comment(paragraph: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(paragraph, width=98)]


def render_config() -> str:
    """The commented circuit.toml that `config init` writes: every setting with its default.

    Settings without a default, and secrets (which belong in the environment), are written
    commented out.
    """
    blocks = [HEADER]
    for f in declared_settings():
        if f.name in _NOT_IN_FILE:
            continue
        lines = _comment(f"{f.metadata['help']} (env: {f.metadata['env']})")
        if f.metadata["secret"]:
            lines += _comment(f"A secret: better set {f.metadata['env']} in the environment.")
            example: Any = ["sk-..."] if isinstance(f.default, tuple) else "sk-..."
            lines += ["# " + line for line in tomli_w.dumps({f.name: example}).splitlines()]
        elif f.default is None:
            lines.append(tomli_w.dumps({f.name: "off"}).strip() if accepts_off(f)
                         else f"# {f.name} = ")
        else:
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            lines.append(tomli_w.dumps({f.name: default}).strip())
        blocks.append("\n".join(lines) + "\n")
    blocks.append(PRICES_EXAMPLE)
    return "\n".join(blocks)


def _load(ctx: typer.Context) -> Settings:
    return load_settings({"db_path": ctx.meta.get(DB_KEY),
                          "config_path": ctx.meta.get(CONFIG_KEY)})


@app.command()
def init(
    path: Annotated[Path, typer.Argument(
        metavar="[PATH]", help="Where to write it.")] = Path("circuit.toml"),
    force: Annotated[bool, typer.Option("--force", metavar="",
                                        help="Overwrite an existing file.")] = False,
) -> None:
    """Write a circuit.toml with every setting, its default and what it does.

    Refuses to overwrite a file unless given --force.

    Examples:

    * `circuit config init && $EDITOR circuit.toml`
    * `circuit config init /etc/circuit/circuit.toml --force`
    """
    if path.exists() and not force:
        raise fail(f"{path} exists already; use --force to overwrite it")
    if path.is_dir():
        raise fail(f"{path} is a folder; give a file name such as {path / 'circuit.toml'}")
    try:
        path.write_text(render_config(), encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None
    output.out().print(f"Wrote {text(path)}. Check it with `circuit config check`.",
                       soft_wrap=True)


@app.command()
def reference() -> None:
    """Print every setting as a Markdown table: name, variable, default, meaning.

    The README's configuration reference is this table.

    Example: circuit config reference > settings.md
    """
    typer.echo(settings_table())


@app.command()
def show(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Print the settings in effect and where each came from; secrets are masked.

    Sources: default, toml, .env, env or flag. JSON: `{"config_path", "settings": {NAME:
    {"value", "env", "source"}}, "prices": {MODEL: {...}}}`, values as text.

    Examples:

    * `circuit config show`
    * `circuit config show --json | jq -r .settings.db_path.value`
    """
    try:
        active = _load(ctx)
    except ConfigError as exc:
        raise fail(f"configuration: {exc}") from None
    rows = active.describe()
    if as_json:
        emit_json({"config_path": active.config_path,
                   "settings": {name: {"value": value, "env": env, "source": source}
                                for name, env, value, source in rows},
                   "prices": active.prices})
        return
    table = Table(title=f"Settings (file: {text(active.config_path or 'none')})",
                  title_justify="left")
    for column in ("Setting", "Environment", "Value", "Source"):
        table.add_column(column, no_wrap=column != "Value")
    for name, env, value, source in rows:
        shown = f"[bold]{text(source)}[/bold]" if source != "default" else "[dim]default[/dim]"
        table.add_row(name, env, text(value), shown)
    console = output.out()
    console.print(table)
    if active.prices:
        console.print(f"Prices from the file for: {text(', '.join(sorted(active.prices)))}",
                      soft_wrap=True)


def _database_problem(db_path: str) -> str | None:
    """Why the gateway could not open or create its database there, if it could not."""
    path = Path(db_path)
    if path.exists():
        if not path.is_file():
            return f"CIRCUIT_DB_PATH {db_path} is not a file"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"CIRCUIT_DB_PATH {db_path} is not readable and writable"
        return None
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return f"CIRCUIT_DB_PATH {db_path}: cannot create it, {folder} is not writable"
    return None


@app.command()
def check(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Validate the configuration as `circuit serve` does: every setting, the providers and
    the keys they need, the routes, the prices; and the database path.

    Exit 0 when valid; exit 1 with one line naming the problem otherwise. JSON: `{"ok",
    "error", "config_path"}`.

    Examples:

    * `circuit config check`
    * `circuit --config prod.toml config check` (in CI, before a deploy)
    """
    from circuit.gateway.validation import validate

    config_path = ctx.meta.get(CONFIG_KEY)
    problem = None
    try:
        active = _load(ctx)
        config_path = active.config_path
        validate(active)
        problem = _database_problem(active.db_path)
    except ConfigError as exc:
        problem = str(exc)
    if as_json:
        emit_json({"ok": problem is None, "error": problem, "config_path": config_path})
        if problem:
            raise typer.Exit(EXIT_CHECK_FAILED)
        return
    if problem:
        raise fail(f"configuration: {problem}", EXIT_CHECK_FAILED)
    source = config_path or "no circuit.toml: defaults, .env and environment"
    output.out().print(f"[green]ok[/green]: the configuration is valid ({text(source)}).",
                       soft_wrap=True)
