"""The gateway process's heap once started: startup's objects frozen, the young generation deep.

Each test runs in a process of its own: the collector's settings are the process's, and this
one's were settled by whichever test started a gateway first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from circuit.gateway.heap import YOUNG_GENERATION


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_started_gateway_freezes_its_startup_heap_and_deepens_the_young_generation(tmp_path):
    seen = _run(f"""
        import asyncio, gc, json
        from pathlib import Path
        from circuit.config import load_settings
        from circuit.gateway.app import create_app

        async def main():
            app = create_app(load_settings(environ={{
                "CIRCUIT_DB_PATH": {str(tmp_path / "circuit.db")!r},
                "CIRCUIT_API_KEYS": "sk-heap-test-0123456789"}}, cwd=Path({str(tmp_path)!r})))
            before = (gc.get_freeze_count(), gc.get_threshold())
            incoming, answers = asyncio.Queue(), asyncio.Queue()
            running = asyncio.create_task(app({{"type": "lifespan", "state": {{}}}},
                                              incoming.get, answers.put))
            await incoming.put({{"type": "lifespan.startup"}})
            started = (await answers.get())["type"]
            after = (gc.get_freeze_count(), gc.get_threshold())
            await incoming.put({{"type": "lifespan.shutdown"}})
            await running
            print(json.dumps({{"started": started, "before": before, "after": after}}))

        asyncio.run(main())
    """)
    assert seen["started"] == "lifespan.startup.complete"
    assert seen["before"][0] == 0
    assert seen["after"][0] > 10_000  # the prices, the tokenizer, the code: frozen
    assert seen["before"][1][0] == 700
    assert seen["after"][1] == [YOUNG_GENERATION, *seen["before"][1][1:]]


def test_garbage_from_startup_is_collected_not_frozen():
    seen = _run("""
        import gc, json, weakref
        from circuit.gateway.heap import settle_heap

        class Node:
            pass

        gc.disable()  # the cycle must still be there when settle_heap runs
        node = Node()
        node.self = node
        gone = weakref.ref(node)
        del node
        gc.enable()
        settle_heap()
        print(json.dumps({"collected": gone() is None}))
    """)
    assert seen["collected"]


def test_settling_a_second_time_freezes_nothing_more():
    seen = _run("""
        import gc, json
        from circuit.gateway.heap import settle_heap

        settle_heap()
        first = gc.get_freeze_count()
        later = [[index] for index in range(5_000)]  # what requests leave behind
        settle_heap()
        print(json.dumps({"first": first, "second": gc.get_freeze_count()}))
    """)
    assert seen["second"] == seen["first"]


def test_a_process_with_collection_switched_off_keeps_it_off():
    seen = _run("""
        import gc, json
        from circuit.gateway.heap import settle_heap

        gc.set_threshold(0)
        settle_heap()
        print(json.dumps({"threshold": gc.get_threshold()[0]}))
    """)
    assert seen["threshold"] == 0


def test_a_process_that_asked_for_a_deeper_young_generation_keeps_it():
    seen = _run("""
        import gc, json
        from circuit.gateway.heap import settle_heap

        gc.set_threshold(200_000, 10, 10)
        settle_heap()
        print(json.dumps({"threshold": gc.get_threshold()[0]}))
    """)
    assert seen["threshold"] == 200_000
