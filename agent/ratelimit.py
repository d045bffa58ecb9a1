"""Token buckets shared by every job that spends the same API budget.

A Meraki organisation allows 10 requests/s whichever job asks, and a Graph tenant
throttles per app: callers ask `RateLimits.bucket(key, rate)` for the bucket of their
budget and take a token before each call, with `await bucket.acquire()` on the event
loop or `bucket.acquire_blocking()` in a worker thread. Both return the seconds they
waited, for `vigil_api_wait_seconds_total`. Asking again with another rate (a reloaded
config) changes the bucket's rate for every user of the budget.

The token count is guarded by a thread lock that is never held while waiting: a waiter
sleeps until the tokens it lacks should have refilled, then tries again, so sync and
async callers share one bucket and all time comes from the agent's clock.
"""

from __future__ import annotations

import threading

from agent.clock import Clock

EPSILON = 1e-9  # float refills land a hair short


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Clock):
        _check(rate, burst)
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._updated = clock.monotonic()
        self._lock = threading.Lock()

    async def acquire(self, tokens: float = 1) -> float:
        """Take `tokens`, sleeping on the clock until they are there; the seconds slept."""
        waited = 0.0
        while (wait := self._take(tokens)) > 0:
            await self._clock.sleep(wait)
            waited += wait
        return waited

    def acquire_blocking(self, tokens: float = 1) -> float:
        """The same for thread code: blocks on `clock.wait`."""
        waited = 0.0
        while (wait := self._take(tokens)) > 0:
            self._clock.wait(wait)
            waited += wait
        return waited

    def configure(self, rate: float, burst: float) -> None:
        """A new rate applies from now; tokens already earned stay, up to the new burst."""
        _check(rate, burst)
        with self._lock:
            self._refill()
            self.rate, self.burst = rate, burst
            self._tokens = min(self._tokens, burst)

    def _take(self, tokens: float) -> float:
        """Take the tokens and return 0, or return how long until they should be there."""
        with self._lock:
            self._refill()
            if self._tokens >= tokens - EPSILON:
                self._tokens -= tokens
                return 0.0
            return (tokens - self._tokens) / self.rate

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now


def _check(rate: float, burst: float) -> None:
    if rate <= 0 or burst < 1:
        raise ValueError("a token bucket needs rate > 0 and burst >= 1")


class RateLimits:
    """One bucket per budget key (`meraki:<org id>`, `graph:<tenant>`), created on first use."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, key: str, rate: float, burst: float | None = None) -> TokenBucket:
        """The budget's bucket; a rate or burst other than its current one replaces them."""
        burst = burst or max(1.0, rate)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate, burst, self._clock)
        if (bucket.rate, bucket.burst) != (rate, burst):
            bucket.configure(rate, burst)
        return bucket
