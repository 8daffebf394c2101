"""settle_heap: the cyclic garbage collector tuned for a gateway process, once it has started.

Under load the collector was an eighth of a request's work. Nearly everything a request makes
is freed by reference counting, so at one request at a time it seldom runs; at 64 at once the
live requests' objects outlast CPython's young generation (a collection every 700 net
allocations), are promoted, and set off collections of the older generations — which walk the
whole heap: the prices, the tokenizer, the code, ~100k objects that live as long as the
process. Counted at c=64 (scripts/bench_instructions.py's requests, 64 at a time), chat JSON
1,139k instructions a request, 1,077k with the startup heap frozen, 1,010k with the young
generation 10,000 allocations deep as well (and 1,010k with the collector off altogether).
"""

from __future__ import annotations

import gc

#: Allocations between collections of the young generation (CPython's default is 700): deep
#: enough that a burst of requests is mostly freed before its objects are examined.
YOUNG_GENERATION = 10_000

_settled = False


def settle_heap() -> None:
    """Freeze what startup made (never garbage, no longer walked by each old-generation
    collection) and deepen the young generation. Once per process: the heap is the process's,
    and a second freeze would take in whatever the first request left behind."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()  # startup's own garbage is not frozen with the rest
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young:  # 0: collection switched off by whoever runs us; left so
        gc.set_threshold(max(young, YOUNG_GENERATION), middle, old)
