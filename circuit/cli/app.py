"""The `circuit` command: a thin layer over the same core the gateway runs.

Each command group lives in its own module (keys, usage, requests, config_cmd) and is added
here; shared printing and exit codes are in `output`, settings and store access in `context`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from circuit import __version__
from circuit.cli import breaker, config_cmd, keys, lifecycle, requests, serve, usage
from circuit.cli.context import CONFIG_KEY, DB_KEY
from circuit.cli.help_format import CircuitTyper, HelpGroup
from circuit.cli.output import EXIT_USAGE, err, fail

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on the click package
    from click import exceptions as click_errors

__all__ = ["app", "fail", "main"]

HELP = """\
Circuit: an OpenAI-compatible LLM gateway with budgets, rate limits and a circuit breaker.

Run the gateway with `circuit serve`; manage client keys, read usage and follow requests from
here, against the same database as a running gateway.

Every read command takes --json for scripts. Output is plain text when stdout is not a
terminal; NO_COLOR is honoured.

Exit codes: 0 ok; 1 a check failed (usage --fail-over, breaker status --fail-if-open,
config check); 2 usage error or bad
input (unknown key, malformed date, missing database).

Examples:

* `circuit serve` (first run: creates the database and prints a key)
* `circuit keys add ci --daily-limit 5 --json`
* `circuit usage --today --by model`
* `circuit requests tail --status failed`
"""


class OneLineErrors(HelpGroup):
    """Usage errors as one line on stderr (`error: ...`), like every other error here."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click_errors.NoArgsIsHelpError:
            sys.exit(EXIT_USAGE)  # the help is already printed
        except click_errors.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            fail(exc.format_message().replace("\n", " ") + hint)
            sys.exit(exc.exit_code)
        except (typer.Abort, getattr(click_errors, "Abort", typer.Abort)):
            err().print("aborted", style="red")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


app = CircuitTyper(
    name="circuit",
    cls=OneLineErrors,
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"circuit {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option(
        "--db", metavar="PATH", show_default=False,
        help="Database file to use (default: CIRCUIT_DB_PATH, circuit.toml, "
             "data/circuit.db).")] = None,
    config: Annotated[str | None, typer.Option(
        "--config", metavar="TOML", show_default=False,
        help="A circuit.toml to read (default: CIRCUIT_CONFIG, ./circuit.toml).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", metavar="", is_eager=True, callback=_print_version,
        help="Print the version and exit.")] = False,
) -> None:
    ctx.meta[DB_KEY] = db
    ctx.meta[CONFIG_KEY] = config


app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.command("usage")(usage.usage)
lifecycle.register(requests.app)
app.add_typer(requests.app, name="requests")
app.add_typer(config_cmd.app, name="config")
app.add_typer(breaker.app, name="breaker")


def main() -> None:
    app()
