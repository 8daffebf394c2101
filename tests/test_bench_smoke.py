"""The benchmark's own tools count right: the load generator against the mock upstream, and a tiny
end-to-end run through the gateway whose request rows must match what was sent.

No assertion here is about speed: these run on a busy CI machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


class Mock:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "bench_upstream.py"), "--port", "0", *args],
            stdout=subprocess.PIPE, text=True)
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def served(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            return json.loads(r.read())["requests"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def mock_factory() -> Iterator:
    started: list[Mock] = []

    def start(*args: str) -> Mock:
        started.append(Mock(*args))
        return started[-1]

    yield start
    for mock in started:
        mock.stop()


def load(url: str, *args: str) -> tuple[dict, list[str]]:
    """Run the load generator; its result and the order of its progress events."""
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_load.py"), "--url", url, *args],
                          capture_output=True, text=True, timeout=120, check=True)
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    return messages[-1]["result"], [m["event"] for m in messages]


def test_json_requests_are_all_counted(mock_factory) -> None:
    mock = mock_factory("--chunks", "5")
    result, events = load(mock.url, "-c", "4", "-d", "1", "-w", "0.2")
    assert events == ["measure_start", "measure_end", "result"]
    assert result["errors_total"] == 0 and result["error_kinds"] == {}
    # Every request written was answered, and the mock saw exactly those.
    assert result["sent_total"] == result["completed_total"] == mock.served()
    assert 0 < result["requests"] <= result["completed_total"]
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["ttfb_ms"]["p50"] <= lat["p50"]
    assert result["rps"] > 0 and result["cpu"]["window_s"] >= 0


def test_stream_events_are_counted_to_done(mock_factory) -> None:
    mock = mock_factory("--chunks", "5")
    result, _ = load(mock.url, "-c", "3", "-d", "1", "-w", "0", "--stream")
    assert result["errors_total"] == 0
    assert result["sent_total"] == result["completed_total"] == mock.served()
    # 5 content events, the finish event and [DONE]; no usage event was asked for.
    assert result["events_per_response"] == 7
    assert result["ttfb_ms"]["p50"] <= result["latency_ms"]["p50"]


def test_max_requests_is_exact_and_ends_the_run_early(mock_factory) -> None:
    mock = mock_factory("--latency-ms", "2")
    result, _ = load(mock.url, "-c", "8", "-d", "60", "-w", "0", "--max-requests", "25")
    assert result["sent_total"] == result["completed_total"] == result["requests"] == 25
    assert mock.served() == 25
    assert result["duration_s"] < 60


def test_slow_streams_are_held_open_and_finished(mock_factory) -> None:
    mock = mock_factory("--chunks", "3", "--chunk-interval-ms", "20")
    result, _ = load(mock.url, "-c", "5", "-d", "60", "-w", "0", "--stream",
                     "--max-requests", "5")
    assert result["errors_total"] == 0 and result["requests"] == 5
    assert result["events_per_response"] == 5
    assert 1 <= result["peak_open_streams"] <= 5


def test_messages_stream_events_are_counted_to_message_stop(mock_factory) -> None:
    mock = mock_factory("--chunks", "5")
    url = mock.url.replace("/v1/chat/completions", "/v1/messages")
    result, _ = load(url, "-c", "3", "-d", "1", "-w", "0", "--stream")
    assert result["errors_total"] == 0
    assert result["sent_total"] == result["completed_total"] == mock.served()
    # message_start, content_block_start, ping, 5 deltas, content_block_stop, message_delta,
    # message_stop.
    assert result["events_per_response"] == 11


def test_responses_stream_events_are_counted_to_response_completed(mock_factory) -> None:
    mock = mock_factory("--chunks", "5")
    url = mock.url.replace("/v1/chat/completions", "/v1/responses")
    result, _ = load(url, "-c", "3", "-d", "1", "-w", "0", "--stream")
    assert result["errors_total"] == 0
    assert result["sent_total"] == result["completed_total"] == mock.served()
    # created, in_progress, output_item.added, content_part.added, 5 deltas,
    # output_text.done, content_part.done, output_item.done, completed.
    assert result["events_per_response"] == 13


def test_an_error_status_is_counted_as_an_error(mock_factory) -> None:
    mock = mock_factory()
    wrong = mock.url.replace("/v1/chat/completions", "/nowhere")
    result, _ = load(wrong, "-c", "2", "-d", "0.5", "-w", "0")
    assert result["requests"] == 0
    assert result["errors"] > 0 and set(result["error_kinds"]) == {"status_404"}


def test_end_to_end_every_request_has_its_row(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_run.py"), "--smoke", "--no-pin",
                           "--no-plot", "--out", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    (records,) = results["records"]
    assert records["sent"] > 0 and records["rows"] == records["sent"] and records["match"]
    assert records["by_status"] == {"ok": records["sent"]}
    through = [s for s in results["scenarios"] if s["target"] == "circuit"]
    assert {s["mode"] for s in through} == {"json", "sse"}
    bare = [s for s in results["scenarios"] if s["target"] == "bare"]
    assert [(s["mode"], s["concurrency"]) for s in bare] == [
        (s["mode"], s["concurrency"]) for s in through], "the bare relay runs each scenario too"
    assert all(s["completed_total"] > 0 and s["gateway"]["cpu_us_per_request"] for s in bare)
    assert all(s["errors_total"] == 0 for s in results["scenarios"])
    for door in ("messages", "responses"):
        for target in (f"circuit-{door}", f"bare-{door}"):
            assert [s["mode"] for s in results["scenarios"] if s["target"] == target] \
                == ["sse"], f"{target}: the door's stream, on Circuit and on the bare relay"
    assert "one request row per request sent" in done.stdout
