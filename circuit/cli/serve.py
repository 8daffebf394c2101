"""`circuit serve`: run the gateway, and say where and how to call it once it answers.

The order is what keeps every start-up message true: the configuration is validated as the
gateway validates it; the listening socket is bound (so a port in use is one line, and `--port 0`
reports the port it got); the first key is made if none exists; the gateway starts; and only when
it answers `GET /healthz` on that socket is the banner printed.
"""

from __future__ import annotations

import http.client
import os
import shlex
import socket
import threading
from pathlib import Path
from typing import Annotated

import typer

from circuit.cli import output
from circuit.cli.context import CONFIG_KEY, DB_KEY, settings, store_errors
from circuit.cli.output import fail
from circuit.config import ConfigError, Settings
from circuit.store.select import describe_store, store_location

#: How long one readiness probe waits for an answer (start-up loads the database and the
#: providers; the probe simply asks again).
_PROBE_SECONDS = 5.0


def uvicorn_config(settings: Settings, *, reload: bool):
    """Every option Circuit gives uvicorn, assembled here and only here."""
    import uvicorn

    from circuit.gateway.http_protocol import BoundedHttpToolsProtocol
    from circuit.logs import uvicorn_log_config

    return uvicorn.Config(
        "circuit.main:app", loop="uvloop", http=BoundedHttpToolsProtocol, access_log=False,
        log_config=uvicorn_log_config("warning", settings.log_format), log_level="warning",
        timeout_graceful_shutdown=settings.shutdown_grace, workers=settings.workers, reload=reload)


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(
        metavar="HOST", show_default=False,
        help="Address to listen on (default: CIRCUIT_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        metavar="PORT", show_default=False,
        help="Port to listen on, 0 for any free one (default: CIRCUIT_PORT, 8080).")] = None,
    workers: Annotated[int | None, typer.Option(
        metavar="N", show_default=False,
        help="Worker processes (default: CIRCUIT_WORKERS, 1).")] = None,
    config: Annotated[Path | None, typer.Option(metavar="TOML",
                                                help="A circuit.toml to read.")] = None,
    reload: Annotated[bool, typer.Option(
        "--reload", metavar="", help="Restart on code changes (development).")] = False,
) -> None:
    """Run the gateway.

    Creates and migrates the database on start. When no active key exists anywhere, makes one
    named `default` and prints it once. The address is printed once the gateway answers.

    Examples:

    * `circuit serve --port 8080`
    * `circuit --db /var/lib/circuit/circuit.db serve --workers 4`
    """
    from circuit import supervision
    from circuit.cli.first_key import ensure_first_key
    from circuit.gateway.validation import validate

    config_path = str(config) if config else ctx.meta.get(CONFIG_KEY)
    # The workers load their settings themselves; the environment is how flags reach them.
    if config_path is not None:
        os.environ["CIRCUIT_CONFIG"] = str(Path(config_path).resolve())
    if ctx.meta.get(DB_KEY):
        os.environ["CIRCUIT_DB_PATH"] = str(ctx.meta[DB_KEY])
    active = settings(ctx, host=host, port=port, workers=workers, config_path=config_path)
    try:
        plan = validate(active)
    except ConfigError as exc:
        raise fail(f"configuration: {exc}") from None
    try:
        sock = supervision.listen(active.host, active.port)
    except supervision.PortInUse:
        raise fail(f"port {active.port} on {active.host} is in use already; choose another "
                   f"with --port (e.g. --port {active.port + 1}), or --port 0 for any free "
                   "one") from None
    except OSError as exc:
        raise fail(f"cannot listen on {active.host}:{active.port}: "
                   f"{exc.strerror or exc}") from None
    where = describe_store(active)
    with store_errors(where):
        try:
            first_key = ensure_first_key(active)
        except OSError as exc:
            raise fail(f"cannot open or create the database at {where}: "
                       f"{exc.strerror or exc}") from None
    model = next(iter(plan.routes), None) or (
        "claude-haiku-4-5" if plan.specs[active.provider].kind == "anthropic" else "gpt-4o-mini")
    text = banner(active, sock, first_key, model, cli_command(active), reload)
    stop = threading.Event()
    announced = threading.Event()
    watcher = threading.Thread(target=_announce_when_ready, name="circuit-banner", daemon=True,
                               args=(sock, text, stop, announced))
    watcher.start()
    code = supervision.run(uvicorn_config(active, reload=reload), sock,
                           workers=active.workers, reload=reload)
    stop.set()
    watcher.join()
    if code == supervision.EXIT_CONFIG or announced.is_set():
        raise typer.Exit(code)
    if first_key:
        output.out().print(first_key_text(*first_key), soft_wrap=True, markup=False)
    raise fail("the gateway stopped before it was ready; see the messages above", 1)


def cli_command(active: Settings) -> str:
    """`circuit` with what names this gateway's database, so a command pasted into another
    shell or folder reaches the same one: the SQLite file by its absolute path; a PostgreSQL
    URL is a secret, so it is left to CIRCUIT_DATABASE_URL."""
    kind, where = store_location(active)
    if kind == "postgres":
        return "CIRCUIT_DATABASE_URL=… circuit"
    return f"circuit --db {shlex.quote(str(Path(where).resolve()))}"


def _probe_address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def first_key_text(name: str, secret: str) -> str:
    return (f"\nNo API key existed, so one was created (name: {name}). It is shown only this "
            f"once:\n\n    {secret}\n")


def banner(active: Settings, sock: socket.socket, first_key: tuple[str, str] | None,
           model: str, cli: str, reload: bool) -> str:
    """What `serve` prints once the gateway answers: where it is, and a call that works when
    pasted into a shell."""
    host, port = _probe_address(sock)
    base = _url(host, port)
    bound = sock.getsockname()[0]
    where = f"  (listening on {bound}:{port})" if bound != host else ""
    processes = "reload=on" if reload else f"workers={active.workers}"
    lines = [f"Circuit on {base}{where}  provider={active.provider}  "
             f"db={describe_store(active)}  {processes}"]
    if first_key:
        lines.append(first_key_text(*first_key))
        lines += ["Try it:", f"  export CIRCUIT_KEY={first_key[1]}"]
    elif active.api_keys:
        lines.append("\nTry it, with CIRCUIT_KEY set to one of the keys in CIRCUIT_API_KEYS:")
    else:
        lines.append("\nTry it, with CIRCUIT_KEY set to one of this gateway's keys:")
    lines += [f'  curl {base}/chat/completions -H "Authorization: Bearer $CIRCUIT_KEY" \\',
              "    -H 'Content-Type: application/json' \\",
              f"    -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", "
              "\"content\": \"Hello\"}]}'"]
    if not active.api_keys:
        lines.append(f"\nLost a key? `{cli} keys add NAME` makes a new one and prints it once.")
    return "\n".join(lines) + "\n"


def _answers(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=_PROBE_SECONDS)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _announce_when_ready(sock: socket.socket, text: str, stop: threading.Event,
                         announced: threading.Event) -> None:
    """Print `text` once the gateway answers /healthz on `sock`; give up when told to stop."""
    host, port = _probe_address(sock)
    while not stop.is_set():
        if _answers(host, port):
            if not stop.is_set():
                console = output.out()
                console.print(text, soft_wrap=True, markup=False, end="")
                console.file.flush()
                announced.set()
            return
        stop.wait(0.05)
