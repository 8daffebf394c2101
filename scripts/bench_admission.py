"""What a rate-limit admission costs the gateway's event loop: local buckets against the fleet's
buckets in Redis, one admission at a time (c=1) and 64 at once (c=64).

    .venv/bin/python scripts/bench_admission.py [--redis redis://127.0.0.1:6379/9] [-n 20000]

Reports CPU microseconds per admission in this process (what the gateway pays; Redis' own CPU
is not counted), wall time per admission, and Redis round trips per admission (concurrent
admissions share a pipeline). Keys go under a fresh prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import uvloop

from circuit.resilience.rate_limit import Limits, RateLimiter
from circuit.resilience.redis_link import RedisLink
from circuit.resilience.shared_limits import SharedRateLimiter

LIMITS = Limits(rpm=10**9, tpm=10**12)  # never refused: the cost of admitting is measured


async def measure(limiter, count: int, concurrency: int, keys: int = 64) -> tuple[float, float]:
    """(CPU µs, wall µs) per admission."""
    async def worker(w: int) -> None:
        for n in range(count // concurrency):
            await limiter.admit(f"key-{(w + n) % keys}", LIMITS, 100)
            limiter.settle(f"key-{(w + n) % keys}", LIMITS, 100, 60)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    done = count // concurrency * concurrency
    return ((time.process_time() - cpu) * 1e6 / done, (time.perf_counter() - wall) * 1e6 / done)


async def main(url: str, count: int) -> None:
    local = RateLimiter()
    link = RedisLink(url, timeout=2.0)
    await link.start()
    if not link.up:
        raise SystemExit(f"Redis at {link.address} does not answer: {link.error}")
    prefix = f"bench-admission-{secrets.token_hex(4)}:"
    shared = SharedRateLimiter(link, prefix=prefix)
    print(f"{'limiter':8} {'c':>3} {'CPU µs/adm':>11} {'wall µs/adm':>12} {'round trips/adm':>16}")
    try:
        for name, limiter in (("local", local), ("redis", shared)):
            await measure(limiter, 2000, 64)  # warm-up: scripts loaded, pool filled
            for concurrency in (1, 64):
                trips, calls = link.round_trips, link.calls
                cpu, wall = await measure(limiter, count, concurrency)
                await link.flush()
                admissions = count // concurrency * concurrency
                per = (link.round_trips - trips) / admissions if name == "redis" else 0.0
                scripts = (link.calls - calls) / admissions if name == "redis" else 0.0
                print(f"{name:8} {concurrency:>3} {cpu:>11.1f} {wall:>12.1f} {per:>16.3f}"
                      + (f"   ({scripts:.1f} scripts/adm: admit + settle)" if scripts else ""))
    finally:
        keys = [k async for k in link.client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await link.client.delete(*keys)
        await link.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("-n", type=int, default=20000, help="admissions per measurement")
    args = parser.parse_args()
    uvloop.run(main(args.redis, args.n))
