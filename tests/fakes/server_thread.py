"""Run an ``aiohttp.web.Application`` as a real HTTP server in a background thread.

Tests (sync or async) talk to it over genuine TCP on 127.0.0.1, so every byte crosses a
socket exactly as it would in production. The server owns its own event loop in its own
thread, which keeps it independent of whatever loop (if any) the test runs.

    with ServerThread(app) as server:
        httpx.get(server.url + "/health")
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class ServerThread:
    """An aiohttp app served on ``127.0.0.1:<free port>`` from a daemon thread.

    ``start()`` returns only once the socket is listening (or re-raises the startup error);
    ``stop()`` closes the listener, gives in-flight handlers ``shutdown_timeout`` seconds,
    cancels the rest, closes the loop and joins the thread. Both are idempotent.

    ``handler_cancellation`` defaults to True (unlike aiohttp's default): when a client
    disconnects, the handler task is cancelled, so handlers see ``CancelledError``
    promptly instead of only on their next write.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 0.1,
        handler_cancellation: bool = True,
        startup_timeout: float = 10.0,
        **runner_kwargs: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port  # 0 = pick a free port; the real one is set by start()
        self._shutdown_timeout = shutdown_timeout
        self._handler_cancellation = handler_cancellation
        self._startup_timeout = startup_timeout
        self._runner_kwargs = runner_kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self._thread is None or not self._ready.is_set():
            raise RuntimeError("server is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self._ready.is_set()
            and not self._stopping
        )

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("server is not running")
        return self._loop

    def start(self) -> ServerThread:
        if self._thread is not None:
            return self
        self._ready.clear()
        self._startup_error = None
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"ServerThread[{self.app!r}]", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._startup_timeout):
            self.stop()
            raise TimeoutError(f"server did not start within {self._startup_timeout}s")
        if self._startup_error is not None:
            err = self._startup_error
            self._thread.join(5)
            self._thread = None
            self._loop = None
            raise RuntimeError("server failed to start") from err
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        self._stopping = True
        if loop is not None and not loop.is_closed() and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(self._shutdown_timeout + 10)
        if thread.is_alive():  # pragma: no cover - would mean a handler ignores cancellation
            raise RuntimeError("server thread did not stop")
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run ``fn()`` (a coroutine factory) on the server's loop and wait for its result."""
        fut = asyncio.run_coroutine_threadsafe(fn(), self.loop)  # type: ignore[arg-type]
        try:
            return fut.result(timeout)
        except FutureTimeoutError:
            fut.cancel()
            raise

    # ------------------------------------------------------------------ thread body

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                self._startup_error = exc
                self._ready.set()
                return
            self._ready.set()
            loop.run_forever()  # until stop() calls loop.stop()
            loop.run_until_complete(self._shutdown())
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
            handler_cancellation=self._handler_cancellation,
            **self._runner_kwargs,
        )
        await self._runner.setup()
        # Bind the socket ourselves: port 0 gives a free port with no race, and we know it.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
