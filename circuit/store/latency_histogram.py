"""A fixed latency histogram that rollups keep, so percentiles survive the rows they came from.

Bucket edges grow by 2^(1/4) from 0.1 ms: bucket 0 holds latencies below 0.1 ms, bucket i (1 to
94) holds [0.1·2^((i-1)/4), 0.1·2^(i/4)) ms, and bucket 95 everything from 0.1·2^23.5 ms
(about 19.8 minutes) up. A percentile read from it is the bucket's geometric middle: within
2^(1/8) - 1 ≈ 9.1% of the true value for every bucket but the two ends. Counts add, so the
histograms of many days merge by summing columns in SQL.

The scheme is part of the schema (one column per bucket in `request_rollups`): changing it
needs a migration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BUCKETS = 96
#: The lower edge of bucket 1, in milliseconds.
FLOOR_MS = 0.1
STEPS_PER_DOUBLING = 4
#: Column names, one per bucket.
COLUMNS: tuple[str, ...] = tuple(f"lat_{i:02d}" for i in range(BUCKETS))
#: The most a percentile read from the histogram can be off, relative to the true value
#: (inside the floor and the top bucket).
RELATIVE_ERROR = 2 ** (1 / (2 * STEPS_PER_DOUBLING)) - 1


def bucket_of(latency_ms: float) -> int:
    """The bucket a latency falls in."""
    if latency_ms < FLOOR_MS:
        return 0
    return min(BUCKETS - 1, 1 + int(math.log2(latency_ms / FLOOR_MS) * STEPS_PER_DOUBLING))


def lower_edge(bucket: int) -> float:
    """The smallest latency (ms) of `bucket` (0 for bucket 0)."""
    return 0.0 if bucket == 0 else FLOOR_MS * 2 ** ((bucket - 1) / STEPS_PER_DOUBLING)


def value_of(bucket: int) -> float:
    """What a percentile that lands in `bucket` reads as: the geometric middle of its edges
    (the floor for bucket 0, the lower edge for the open-ended top bucket)."""
    if bucket == 0:
        return FLOOR_MS
    if bucket == BUCKETS - 1:
        return lower_edge(bucket)
    return FLOOR_MS * 2 ** ((bucket - 0.5) / STEPS_PER_DOUBLING)


def histogram(latencies: Sequence[float]) -> list[int]:
    """The counts of `latencies`, one per bucket."""
    counts = [0] * BUCKETS
    for latency in latencies:
        counts[bucket_of(latency)] += 1
    return counts


def percentile(counts: Sequence[int], p: int) -> float | None:
    """Nearest-rank percentile `p` (0-100) of the latencies counted; None when there are none."""
    total = sum(counts)
    if not total:
        return None
    rank = max(1, (p * total + 99) // 100)
    seen = 0
    for bucket, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return round(value_of(bucket), 3)
    raise AssertionError("unreachable: the ranks add up to the total")
