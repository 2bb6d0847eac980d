"""Per-key rate limits: a token bucket of events per key, answered with a retry delay.

A request is admitted while its key's bucket is not empty and then takes one
token per event, possibly going into debt: a batch larger than the bucket still
passes, and the key waits until the debt is paid. Over time a key gets its rate,
with bursts up to one second of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    rate: float
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets of events per second, one per key id."""

    def __init__(
        self, *, events_per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.default_rate = events_per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key_id: str, events: int, *, rate: float | None = None) -> float:
        """Spend `events` tokens of a key; return 0, or the seconds to wait before a retry.

        `rate` overrides the default rate for this key; no rate at all means no limit.
        """
        rate = rate or self.default_rate
        if rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[key_id] = _Bucket(rate, rate, now)
            bucket.tokens = min(rate, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens <= 0:
                return (-bucket.tokens + 1) / rate
            bucket.tokens -= events
            return 0.0
