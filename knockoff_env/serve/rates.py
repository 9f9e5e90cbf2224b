"""Per-client rate limits: a token bucket per client, at most ``size`` of them in memory.

A bucket holds up to ``capacity`` queries and refills at ``rate`` queries per second. Buckets
live in memory only (a restart refills them: at worst one extra burst) and the least recently
used beyond ``size`` are dropped (the same: a full bucket for a client not seen for a while).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict


class TokenBuckets:
    def __init__(self, rate: float, capacity: float, size: int = 4096):
        if not rate > 0 or not capacity > 0 or size < 1:
            raise ValueError(f"rate={rate!r}, capacity={capacity!r} and size={size!r} must be positive")
        self.rate, self.capacity, self.size = float(rate), float(capacity), int(size)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, client: str, n: int) -> float:
        """Seconds until ``client`` may send ``n`` more queries; 0 takes them now."""
        with self._lock:
            now = time.monotonic()
            tokens, last = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= n else (n - tokens) / self.rate
            self._buckets[client] = (tokens - n if wait == 0 else tokens, now)
            while len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
            return wait
