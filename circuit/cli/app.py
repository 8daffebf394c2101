"""The `circuit` command: a thin layer over the same core the gateway runs.

Each command group lives in its own module (keys, usage, requests, config_cmd) and is added
here; shared printing and exit codes are in `output`, settings and store access in `context`.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from circuit.cli import breaker, config_cmd, keys, requests, usage
from circuit.cli.context import CONFIG_KEY, DB_KEY, settings
from circuit.cli.output import EXIT_USAGE, err, fail, out
from circuit.store.select import describe_store

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


class OneLineErrors(TyperGroup):
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


app = typer.Typer(
    name="circuit",
    cls=OneLineErrors,
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)


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
) -> None:
    ctx.meta[DB_KEY] = db
    ctx.meta[CONFIG_KEY] = config


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    config: Annotated[Path | None, typer.Option(help="A circuit.toml to read.")] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Run the gateway.

    Creates and migrates the database on start. When no key exists anywhere, makes one named
    `default` and prints it once.

    Examples:

    * `circuit serve --port 8080`
    * `circuit --db /var/lib/circuit/circuit.db serve --workers 4`
    """
    import uvicorn

    from circuit.cli.first_key import ensure_first_key
    from circuit.gateway.http_protocol import BoundedHttpToolsProtocol

    config_path = str(config) if config else ctx.meta.get(CONFIG_KEY)
    # The workers load their settings themselves; the environment is how flags reach them.
    if config_path is not None:
        os.environ["CIRCUIT_CONFIG"] = str(Path(config_path).resolve())
    if ctx.meta.get(DB_KEY):
        os.environ["CIRCUIT_DB_PATH"] = str(ctx.meta[DB_KEY])
    active = settings(ctx, host=host, port=port, workers=workers, config_path=config_path)
    first_key = ensure_first_key(active)
    console = out()
    base = f"http://{active.host}:{active.port}/v1"
    console.print(f"[bold]Circuit[/bold] on [cyan]{base}[/cyan]  provider={active.provider}  "
                  f"db={describe_store(active)}  workers={active.workers}", soft_wrap=True)
    if first_key:
        console.print("\nNo API key existed, so one was created (name: [bold]default[/bold]). "
                      "It is shown only this once:\n", soft_wrap=True)
        console.print(f"    {first_key}\n", soft_wrap=True)
    key_hint = first_key or "$CIRCUIT_KEY"
    console.print("Try it:\n"
                  f"  curl {base}/chat/completions -H 'Authorization: Bearer {key_hint}' \\\n"
                  "    -H 'Content-Type: application/json' \\\n"
                  "    -d '{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"user\", "
                  "\"content\": \"Hello\"}]}'\n", soft_wrap=True, markup=False)
    sys.stdout.flush()
    # uvicorn re-raises the SIGTERM it handled once it has drained; with a no-op handler in
    # place that re-raise does nothing, so a clean drain exits 0, as service managers expect.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run("circuit.main:app", host=active.host, port=active.port,
                workers=active.workers if not reload else None, reload=reload,
                loop="uvloop", http=BoundedHttpToolsProtocol, access_log=False, log_level="warning",
                timeout_graceful_shutdown=30)


app.add_typer(keys.app, name="keys")
app.command("usage")(usage.usage)
app.add_typer(requests.app, name="requests")
app.add_typer(config_cmd.app, name="config")
app.add_typer(breaker.app, name="breaker")


def main() -> None:
    app()
