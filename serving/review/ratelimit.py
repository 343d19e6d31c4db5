"""Rate limits per token: one in-process token bucket per key (a reviewer's token, a service's bearer
token, a client address at login).

A bucket holds up to `burst` tokens and refills at `per_minute / 60` a second; a request takes one or
is told how long to wait (the 429's Retry-After). Buckets live in a bounded LRU map, so a flood of
distinct keys costs memory up to `max_keys` buckets and no more (a dropped bucket comes back full:
the bound is on memory, and the per-key limit still holds for every key that keeps calling).
Per process: each replica limits on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    def __init__(self, per_minute: float, burst: int, max_keys: int, clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a rate limit needs per_minute > 0, burst >= 1 and max_keys >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(key, None) or _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[key] = bucket  # most recently used last
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate


def retry_after(wait_s: float) -> str:
    """The Retry-After header's value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))
