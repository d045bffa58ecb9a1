"""Token buckets shared by every job that spends the same API budget.

A Meraki organisation allows 10 requests/s whichever job asks, and a Graph tenant
throttles per app: collectors ask `RateLimits.bucket(key, ...)` for the bucket of their
budget and `await bucket.acquire()` before each call.
"""

from __future__ import annotations

import asyncio

from agent.clock import Clock


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Clock):
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._updated = clock.monotonic()
        self._lock = asyncio.Lock()  # first come, first served

    async def acquire(self, tokens: float = 1) -> None:
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= tokens - 1e-9:  # float refills land a hair short
                    self._tokens -= tokens
                    return
                await self._clock.sleep((tokens - self._tokens) / self.rate)


class RateLimits:
    """One bucket per budget key (`meraki:<org id>`, `graph:<tenant>`), created on first use."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, key: str, rate: float, burst: float | None = None) -> TokenBucket:
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(rate, burst or max(1.0, rate), self._clock)
        return self._buckets[key]
