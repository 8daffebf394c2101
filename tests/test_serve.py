"""`circuit serve` as a real process: what it prints at start-up is true and leads somewhere.

The banner appears only once the gateway answers, with the port it really holds; a port in use
is one line and exit 2; the "Try it" block works when pasted into a shell; with several workers
a SIGTERM refuses new connections at once while the streams in flight finish.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.reliability.support import (
    BIN,
    CHAT,
    GatewayProcess,
    auth,
    chat_body,
    clean_environment,
    sse_data,
)

CIRCUIT = str(BIN / "circuit")
BANNER = re.compile(r"Circuit on http://127\.0\.0\.1:(\d+)/v1")


class Serve:
    """`circuit serve ARGS` in `folder`, its output in files, stopped by its pid."""

    def __init__(self, folder: Path, *args: str, **settings: str) -> None:
        self.folder = folder
        self.out = folder / "serve.stdout"
        self.err = folder / "serve.stderr"
        env = clean_environment(**{"CIRCUIT_DB_PATH": folder / "circuit.db",
                                   "CIRCUIT_LOG_LEVEL": "warning", **settings})
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen([CIRCUIT, "serve", *args], cwd=folder, env=env,
                                            stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def banner_port(self, timeout: float = 30.0) -> int:
        """The port the banner names, once it is printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := BANNER.search(self.stdout()):
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no banner; stdout: {self.stdout()!r}; stderr: {self.stderr()!r}")

    def try_it(self, timeout: float = 30.0) -> str:
        """The shell lines of the banner's "Try it" block, once the block is whole."""
        self.banner_port(timeout)
        deadline = time.monotonic() + timeout
        while "Hello" not in self.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = [*self.stdout().split("Try it", 1)[1].splitlines()[1:], ""]
        return "\n".join(line for line in lines[:lines.index("")] if line.startswith("  "))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


@pytest.fixture
def serve(tmp_path):
    started: list[Serve] = []

    def start(*args: str, **settings: str) -> Serve:
        started.append(Serve(tmp_path, *args, **settings))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def _answers_healthz(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


# -- the banner ---------------------------------------------------------------------------------

def test_the_banner_names_the_port_port_0_really_bound_and_it_answers_then(serve):
    gateway = serve("--port", "0", CIRCUIT_API_KEYS="sk-serve-test-key-0123")
    port = gateway.banner_port()
    assert port != 0
    assert _answers_healthz(port), "the banner is printed once the gateway answers"


def test_with_two_workers_the_banner_names_a_port_that_answers(serve):
    gateway = serve("--port", "0", "--workers", "2", CIRCUIT_API_KEYS="sk-serve-test-key-0123")
    assert _answers_healthz(gateway.banner_port())
    assert "workers=2" in gateway.stdout()


def test_with_reload_the_banner_names_a_port_that_answers(serve):
    gateway = serve("--port", "0", "--reload", CIRCUIT_API_KEYS="sk-serve-test-key-0123")
    assert _answers_healthz(gateway.banner_port())
    assert gateway.stop() == 0


def test_under_reload_a_configuration_broken_while_serving_ends_serve_with_exit_2(
        serve, tmp_path):
    (tmp_path / "watched.py").write_text("x = 1\n")
    gateway = serve("--port", "0", "--reload", CIRCUIT_API_KEYS="sk-serve-test-key-0123")
    gateway.banner_port()
    (tmp_path / ".env").write_text("PROVIDER=bogus\n")
    (tmp_path / "watched.py").write_text("x = 2\n")  # the reloader restarts its child
    assert gateway.process.wait(60) == 2
    assert "circuit: configuration error: PROVIDER must be one of" in gateway.stderr()


def test_a_port_in_use_is_one_line_naming_it_with_exit_2_and_no_banner(serve):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = serve("--port", str(port), CIRCUIT_API_KEYS="sk-serve-test-key-0123")
        assert gateway.process.wait(30) == 2
    lines = gateway.stderr().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"port {port}" in lines[0] and "--port" in lines[0]
    assert "Circuit on" not in gateway.stdout() and "Try it" not in gateway.stdout()


def test_a_database_that_cannot_be_created_is_one_line_before_anything_starts(serve, tmp_path):
    (tmp_path / "occupied").write_text("a file where the database folder would be\n")
    gateway = serve("--port", "0", CIRCUIT_DB_PATH=str(tmp_path / "occupied" / "circuit.db"))
    assert gateway.process.wait(30) == 2
    lines = gateway.stderr().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0]
    assert "occupied/circuit.db" in lines[0]
    assert gateway.stdout() == ""


def test_an_invalid_route_stops_serve_before_it_binds_or_makes_a_key(serve, tmp_path):
    (tmp_path / "circuit.toml").write_text('[routes]\n"gpt-4o" = ["nowhere:gpt-4o"]\n')
    gateway = serve("--port", "0")
    assert gateway.process.wait(30) == 2
    assert "unknown provider 'nowhere'" in gateway.stderr()
    assert gateway.stdout() == "" and not (tmp_path / "circuit.db").exists()


# -- "Try it" -----------------------------------------------------------------------------------

def test_the_try_it_block_with_a_new_key_works_pasted_into_a_shell(serve):
    gateway = serve("--port", "0")
    block = gateway.try_it()
    assert "export CIRCUIT_KEY=sk-circuit-" in block
    pasted = subprocess.run(["bash", "-c", block + " --silent --show-error"],
                            capture_output=True, text=True, timeout=30,
                            env=clean_environment())
    assert pasted.returncode == 0, pasted.stderr
    assert orjson.loads(pasted.stdout)["choices"][0]["message"]["content"]


def test_with_configured_keys_the_try_it_block_works_once_circuit_key_is_one_of_them(serve):
    gateway = serve("--port", "0", CIRCUIT_API_KEYS="sk-serve-test-key-0123")
    block = gateway.try_it()
    assert "CIRCUIT_KEY set to one of the keys in CIRCUIT_API_KEYS" in gateway.stdout()
    pasted = subprocess.run(["bash", "-c", block + " --silent --show-error"],
                            capture_output=True, text=True, timeout=30,
                            env=clean_environment(CIRCUIT_KEY="sk-serve-test-key-0123"))
    assert pasted.returncode == 0, pasted.stderr
    assert orjson.loads(pasted.stdout)["choices"][0]["message"]["content"]


def test_a_restart_with_keys_in_the_table_says_how_to_get_a_new_key(serve):
    first = serve("--port", "0")
    first.try_it()
    assert first.stop() == 0
    again = serve("--port", "0")
    again.try_it()
    out = again.stdout().split("Circuit on", 2)[-1]
    assert "one was created" not in out and "export CIRCUIT_KEY" not in out
    assert "one of this gateway's keys" in out
    assert f"`circuit --db {again.folder / 'circuit.db'} keys add NAME`" in out


def test_the_lost_key_hint_reaches_the_gateway_database_from_any_folder(serve, tmp_path):
    gateway = serve("--port", "0")
    gateway.try_it()
    hint = re.search(r"`(circuit [^`]+ keys add) NAME`", gateway.stdout()).group(1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    added = subprocess.run(["bash", "-c", f"{hint} second --json"], cwd=elsewhere,
                           capture_output=True, text=True, timeout=60,
                           env=clean_environment(PATH=f"{BIN}:/usr/bin:/bin"))
    assert added.returncode == 0, added.stderr
    assert not (elsewhere / "data").exists()
    headers = {"Authorization": f"Bearer {orjson.loads(added.stdout)['key']}"}
    deadline = time.monotonic() + 10  # the gateway picks up new keys within a second
    while True:
        reply = httpx.post(f"http://127.0.0.1:{gateway.banner_port()}/v1/chat/completions",
                           json=chat_body(), headers=headers, timeout=30)
        if reply.status_code != 401 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply.status_code == 200, "the new key works on the running gateway"


# -- SIGTERM with several workers ---------------------------------------------------------------

def _connection_outcome(port: int) -> str:
    """What a new connection gets: refused, reset or closed unanswered, an answer, or a hang."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return "answered" if sock.recv(100) else "closed"
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "hung"


def test_with_two_workers_new_connections_are_refused_at_once_after_sigterm(tmp_path):
    words = [f"w{i}" for i in range(40)]
    with FakeOpenAI() as upstream:
        upstream.default = Behaviour(chunk_delay=0.1, reply=" ".join(words))  # a ~4 s stream
        gateway = GatewayProcess(tmp_path, serve_args=("--workers", "2"), PROVIDER="openai",
                                 OPENAI_BASE_URL=upstream.base_url,
                                 OPENAI_API_KEY="sk-upstream").wait_ready()
        try:
            body: list[str] = []
            first_chunk = threading.Event()

            def stream() -> None:
                with httpx.stream("POST", gateway.url + CHAT, json=chat_body(stream=True),
                                  headers=auth(), timeout=30) as response:
                    for chunk in response.iter_text():
                        body.append(chunk)
                        first_chunk.set()

            streaming = threading.Thread(target=stream)
            streaming.start()
            assert first_chunk.wait(15)
            gateway.signal(signal.SIGTERM)
            outcomes: list[str] = []
            deadline = time.monotonic() + 20
            while (not outcomes or outcomes[-1] not in ("refused", "hung")) \
                    and time.monotonic() < deadline:
                outcomes.append(_connection_outcome(gateway.port))
                time.sleep(0.05)
            still_streaming = streaming.is_alive()
            streaming.join(30)
            status = gateway.wait(40)
        finally:
            gateway.kill()
    assert outcomes[-1] == "refused", outcomes
    assert still_streaming, "refused while a stream was still in flight"
    assert sse_data("".join(body))[-1] == "[DONE]", "the stream in flight ran to its end"
    assert status == 0


# -- the other ways in --------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[CIRCUIT, "--version"],
                                     [sys.executable, "-m", "circuit", "--version"]])
def test_the_version_is_printed_by_circuit_and_python_m_circuit(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert re.fullmatch(r"circuit \d+\.\d+\.\d+\n", result.stdout)
