"""Readiness: can this process serve? Database reachable, writer healthy, providers ready."""

from __future__ import annotations

import asyncio
import time

from circuit.gateway.control import last_failure_text
from circuit.gateway.runtime import Gateway

#: A database that takes longer than this to answer is not ready.
DATABASE_TIMEOUT = 2.0


async def readiness(gateway: Gateway) -> dict[str, dict]:
    """One entry per check, each with `ok` and what it saw."""
    return {"database": await _database(gateway),
            "writer": {"ok": gateway.writer.alive and gateway.writer.healthy,
                       "pending": gateway.writer.pending, "written": gateway.writer.written,
                       "journaled": gateway.writer.spilled, "replayed": gateway.writer.replayed,
                       "dropped": gateway.writer.dropped},
            "providers": _providers(gateway),
            **({"redis": gateway.fleet.readiness()} if gateway.fleet is not None else {})}


async def _database(gateway: Gateway) -> dict:
    started = time.perf_counter()
    try:
        exists = await asyncio.wait_for(asyncio.to_thread(gateway.store.exists),
                                        DATABASE_TIMEOUT)
        if exists:
            await asyncio.wait_for(asyncio.to_thread(gateway.store.keys_fingerprint),
                                   DATABASE_TIMEOUT)
    except Exception as exc:  # any failure to answer is "not ready", described, never raised
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    if not exists:
        return {"ok": False, "error": "the database is gone (no Circuit tables)"}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _providers(gateway: Gateway) -> dict:
    breakers = {name: breaker.state for name, breaker in gateway.breakers.items()}
    answer = {"ok": bool(gateway.router.providers), "default": gateway.router.default.name,
              "breakers": breakers}
    failures = {name: text for name, breaker in gateway.breakers.items()
                if (text := last_failure_text(breaker)) is not None}
    if failures:
        answer["last_failures"] = failures
    return answer
