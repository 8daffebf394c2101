"""The `circuit` command: a thin layer over the same core the gateway runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from circuit.config import ConfigError, Settings, load_settings

app = typer.Typer(
    name="circuit",
    help="Circuit: an OpenAI-compatible LLM gateway with budgets, rate limits and a circuit "
         "breaker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root() -> None:
    """Run and operate a Circuit gateway. Every read command takes --json for scripts."""


err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear line on stderr and return the Exit to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def settings_from(flags: dict | None = None) -> Settings:
    try:
        return load_settings(flags)
    except ConfigError as exc:
        raise fail(f"configuration: {exc}") from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    config: Annotated[Path | None, typer.Option(help="A circuit.toml to read.")] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Run the gateway.

    Example: circuit serve --port 8080
    """
    import uvicorn

    from circuit.cli.first_key import ensure_first_key

    if config is not None:
        # The workers load their settings themselves; this is how the flag reaches them.
        os.environ["CIRCUIT_CONFIG"] = str(config.resolve())
    settings = settings_from({"host": host, "port": port, "workers": workers,
                              "config_path": str(config) if config else None})
    first_key = ensure_first_key(settings)
    base = f"http://{settings.host}:{settings.port}/v1"
    out.print(f"[bold]Circuit[/bold] on [cyan]{base}[/cyan]  provider={settings.provider}  "
              f"db={settings.db_path}  workers={settings.workers}", highlight=False, soft_wrap=True)
    if first_key:
        out.print("\nNo API key existed, so one was created (name: [bold]default[/bold]). "
                  "It is shown only this once:\n", highlight=False, soft_wrap=True)
        out.print(f"    {first_key}\n", highlight=False, soft_wrap=True)
    key_hint = first_key or "$CIRCUIT_KEY"
    out.print("Try it:\n"
              f"  curl {base}/chat/completions -H 'Authorization: Bearer {key_hint}' \\\n"
              "    -H 'Content-Type: application/json' \\\n"
              "    -d '{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"user\", "
              "\"content\": \"Hello\"}]}'\n", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    uvicorn.run("circuit.main:app", host=settings.host, port=settings.port,
                workers=settings.workers if not reload else None, reload=reload,
                loop="uvloop", http="httptools", access_log=False, log_level="warning",
                timeout_graceful_shutdown=30)


def main() -> None:
    app()
