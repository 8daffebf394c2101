"""A bounded soak: a fixed rate through `circuit serve` for a while, and nothing drifts.

200 requests a second, half of them streams, through a subprocess gateway in front of the
benchmark's fast mock upstream (scripts/bench_upstream.py), for CIRCUIT_SOAK_SECONDS (20 s by
default; 60 s or more for a longer look). The gateway's RSS and open file descriptors are read
from /proc every second. Every request must succeed and have exactly one record; the RSS must
stay flat over the second half of the run and the descriptors must come back to where they were
after the warm-up.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.reliability.support import (
    BenchUpstream,
    GatewayProcess,
    Load,
    duplicated_ids,
    wait_for_rows,
)

SOAK_SECONDS = float(os.environ.get("CIRCUIT_SOAK_SECONDS", "20"))
RATE = 200.0  # requests per second, every other one a stream
WARM_UP_SECONDS = 3.0
#: Measured on 2 quiet cores: +0.01 to +0.05 MB/min over 20 s and 60 s runs (RSS ~69 MB, flat);
#: +2.0 once under a load average of 5, where stalls let more requests overlap. A leak of 1 KiB
#: a request is +12 MB/min at this rate: still well past the bound.
MAX_RSS_SLOPE_MB_PER_MIN = 5.0
#: Measured: the count after the run is at or below the count after the warm-up. Live (established)
#: connections are not counted: the load's keep-alive connections and the upstream pool's grow to
#: the busiest moment's concurrency and stay open a while, so a stall on a busy machine showed +16
#: that was no leak. A connection the gateway failed to close (CLOSE_WAIT) still counts.
MAX_FD_GROWTH = 10


@dataclass
class Soak:
    load: Load
    seconds: float = 0.0
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, RSS KiB, fds)
    fds_after_warm_up: int = 0
    fds_at_end: int = 0
    rows: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def measured(self) -> list:
        return self.load.outcomes[int(RATE * WARM_UP_SECONDS):]

    def rss_slope_mb_per_min(self) -> float:
        """Least-squares slope of RSS over the second half of the run."""
        half = [(t, rss) for t, rss, _ in self.samples if t >= self.seconds / 2]
        mean_t = sum(t for t, _ in half) / len(half)
        mean_rss = sum(rss for _, rss in half) / len(half)
        slope = sum((t - mean_t) * (rss - mean_rss) for t, rss in half) / \
            sum((t - mean_t) ** 2 for t, _ in half)  # KiB per second
        return slope * 60 / 1024


def _quiet_fd_count(gateway: GatewayProcess) -> int:
    """The descriptor count once the load has stopped, apart from live connections."""
    time.sleep(0.5)
    return gateway.fd_count(live_connections=False)


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Soak:
    upstream = BenchUpstream("--chunks", "5")
    gateway = None
    try:
        gateway = GatewayProcess(tmp_path_factory.mktemp("soak"), PROVIDER="openai",
                                 OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY="sk-soak",
                                 CIRCUIT_LOG_LEVEL="info").wait_ready()
        result = Soak(Load(gateway.port, "soak"))
        stop = threading.Event()

        def sample() -> None:
            started = time.monotonic()
            while not stop.is_set():
                result.samples.append((time.monotonic() - started, gateway.rss_kib(),
                                       gateway.fd_count()))
                stop.wait(1.0)

        async def drive() -> None:
            await result.load.at_rate(RATE, WARM_UP_SECONDS)
            result.fds_after_warm_up = _quiet_fd_count(gateway)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            await result.load.at_rate(RATE, SOAK_SECONDS)
            result.seconds = time.monotonic() - started
            stop.set()
            sampler.join()
            result.fds_at_end = _quiet_fd_count(gateway)

        asyncio.run(drive())
        result.rows = wait_for_rows(gateway.db_path,
                                    [o.request_id for o in result.load.outcomes],
                                    columns="request_id, status")
        rss = [kib for _, kib, _ in result.samples]
        print(f"\nsoak: {len(result.measured)} requests in {result.seconds:.1f} s "
              f"({len(result.measured) / result.seconds:.1f} req/s), RSS {min(rss) / 1024:.1f}"
              f"-{max(rss) / 1024:.1f} MB, slope {result.rss_slope_mb_per_min():+.3f} MB/min, "
              f"fds {result.fds_after_warm_up} after warm-up, {result.fds_at_end} at the end "
              f"(range {min(s[2] for s in result.samples)}-{max(s[2] for s in result.samples)})")
        return result
    finally:
        if gateway is not None:
            gateway.kill()
        upstream.stop()


def test_soak_holds_the_rate(soak):
    assert len(soak.measured) == int(RATE * SOAK_SECONDS)
    assert len(soak.measured) / soak.seconds > RATE * 0.9


def test_soak_has_no_errors(soak):
    failed = [(o.request_id, o.error) for o in soak.load.outcomes if not o.ok]
    assert failed == []


def test_soak_leaves_exactly_one_record_per_request(soak):
    sent = {o.request_id for o in soak.load.outcomes}
    assert set(soak.rows) == sent, "no record dropped, none made up"
    assert duplicated_ids(r for rows in soak.rows.values() for r in rows) == {}
    assert {r["status"] for rows in soak.rows.values() for r in rows} == {"ok"}


def test_soak_rss_stays_flat(soak):
    assert len(soak.samples) >= SOAK_SECONDS * 0.8
    assert soak.rss_slope_mb_per_min() < MAX_RSS_SLOPE_MB_PER_MIN


def test_soak_leaks_no_file_descriptors(soak):
    assert soak.fds_at_end <= soak.fds_after_warm_up + MAX_FD_GROWTH
