"""Gateway processes under uvicorn: the listening socket, the supervisors, and what a process
that cannot start does so that no supervisor waits on, serving nothing.

`circuit serve` binds the listening socket itself, so the port it reports is the port it holds
(`--port 0` included) and a port in use is one line before anything starts. Then one of three
serves on it: uvicorn's Server in this process (one worker), uvicorn's worker supervisor
(`--workers N`), or uvicorn's reloader (`--reload`). The supervisors here differ from uvicorn's
in two ways:

- On SIGTERM or SIGINT they close their own copy of the listening socket at once. uvicorn's keep
  it open until the workers have drained, so the kernel went on accepting new connections that
  no one would answer, and reset them at exit (a client hung ~9 s, then saw a reset); now a new
  connection is refused while the workers finish what they have.
- The reloader stops, exit 2, when its child reports a configuration error (SIGUSR1, see
  `startup_failed`): a code change cannot fix a configuration, so waiting for one is a reloader
  that looks alive and serves nothing.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn
from uvicorn.supervisors import ChangeReload, Multiprocess

#: A configuration error, when the process was run directly (the documented exit code).
EXIT_CONFIG = 2
#: uvicorn's code for a worker that could not start (uvicorn.config.STARTUP_FAILURE): its
#: worker supervisor stops instead of restarting the worker for ever.
STARTUP_FAILURE = 3
#: The signal a reloader's child sends its parent when its configuration is invalid. uvicorn's
#: reloader does not handle it, so its default action ends that reloader (status 138);
#: `circuit serve --reload` handles it and exits 2. Not SIGHUP: under `nohup` (and CI runners
#: that start jobs that way) SIGHUP is ignored, and the reloader waited on, serving nothing.
CONFIG_ERROR_SIGNAL = signal.SIGUSR1


class PortInUse(OSError):
    """Another process listens on the address already."""


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one), inheritable by workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog; its servers call listen() again
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(exc.errno, exc.strerror) from None
        raise
    sock.set_inheritable(True)
    return sock


def _release(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


class _Workers(Multiprocess):
    """uvicorn's worker supervisor, letting go of the listening socket as it starts to stop."""

    def handle_int(self) -> None:
        _release(self.sockets)
        super().handle_int()

    def handle_term(self) -> None:
        _release(self.sockets)
        super().handle_term()


class _Reloader(ChangeReload):
    """uvicorn's reloader, letting go of the socket as it stops, and stopping for good when its
    child reports a configuration error."""

    config_failed = False

    def signal_handler(self, sig: int, frame: FrameType | None) -> None:
        _release(self.sockets)
        super().signal_handler(sig, frame)

    def child_config_error(self, sig: int, frame: FrameType | None) -> None:
        self.config_failed = True
        self.should_exit.set()

    def restart(self) -> None:
        if not self.should_exit.is_set():  # the socket may be closed already
            super().restart()


def run(config: uvicorn.Config, sock: socket.socket, *, workers: int, reload: bool) -> int:
    """Serve `config`'s app on `sock` until a signal stops it; return the exit code: 0 after a
    clean stop, EXIT_CONFIG when a reloaded child's configuration was invalid, STARTUP_FAILURE
    when the one in-process worker never started."""
    # uvicorn re-raises the SIGTERM it handled once it has drained; with a no-op handler in
    # place that re-raise does nothing, so a clean drain exits 0, as service managers expect.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if reload:
        reloader = _Reloader(config, target=uvicorn.Server(config).run, sockets=[sock])
        signal.signal(CONFIG_ERROR_SIGNAL, reloader.child_config_error)
        reloader.run()
        return EXIT_CONFIG if reloader.config_failed else 0
    if workers > 1:
        _Workers(config, sockets=[sock]).run()
        return 0
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it drained for
        pass
    except SystemExit as stopped:  # uvicorn's way out of a failed start
        return stopped.code if isinstance(stopped.code, int) and stopped.code else \
            STARTUP_FAILURE
    return 0 if server.started else STARTUP_FAILURE


def startup_failed() -> int:
    """The exit code for a gateway process whose configuration is invalid, once no supervisor
    is left waiting for it.

    Run directly (`uvicorn circuit.main:app`), the shell sees exit 2. As a uvicorn child (`--workers`,
    `--reload`), STARTUP_FAILURE, on which uvicorn's worker supervisor stops; a reloader would
    still wait for a code change, so it is sent CONFIG_ERROR_SIGNAL as well.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return EXIT_CONFIG
    # A spawned child runs with its parent's sys.argv; the reloader is the parent that
    # was started with --reload (`uvicorn ... --reload`, `circuit serve --reload`).
    if "--reload" in sys.argv and parent.pid:
        print("circuit: stopping the reloader too (a code change cannot fix this); start it "
              "again once the configuration is fixed", file=sys.stderr)
        os.kill(parent.pid, CONFIG_ERROR_SIGNAL)
    return STARTUP_FAILURE
