"""Token buckets shared by async and thread callers, on the agent's clock, with rates that change."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent.ratelimit import RateLimits
from tests.clocks import FakeClock


def test_blocking_callers_wait_on_the_clock_and_say_how_long():
    clock = FakeClock()
    bucket = RateLimits(clock).bucket("veeam:vbr", rate=4, burst=2)

    waited = [bucket.acquire_blocking() for _ in range(6)]

    assert waited[:2] == [0, 0]  # the burst
    assert waited[2:] == pytest.approx([0.25] * 4)
    assert clock.elapsed == pytest.approx(1.0)


def test_async_and_thread_callers_share_one_budget():
    clock = FakeClock()
    limits = RateLimits(clock)
    bucket = limits.bucket("meraki:org-1", rate=5)
    taken: list[str] = []

    def in_thread():
        for _ in range(5):
            bucket.acquire_blocking()
            taken.append("thread")

    async def on_loop():
        for _ in range(5):
            await bucket.acquire()
            taken.append("loop")

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    asyncio.run(on_loop())

    assert taken.count("thread") == 5 and taken.count("loop") == 5
    assert clock.elapsed == pytest.approx(1.0)  # 10 tokens at 5/s, 5 of them the burst


def test_a_changed_rate_applies_to_the_same_bucket():
    clock = FakeClock()
    limits = RateLimits(clock)
    bucket = limits.bucket("graph:tenant", rate=1)
    bucket.acquire_blocking()

    assert limits.bucket("graph:tenant", rate=10) is bucket
    assert (bucket.rate, bucket.burst) == (10, 10)
    assert bucket.acquire_blocking() == pytest.approx(0.1)  # the bucket was empty: one token at the new rate

    limits.bucket("graph:tenant", rate=2, burst=1)
    clock.advance(60)  # a long pause fills only up to the new burst
    assert bucket.acquire_blocking() == 0
    assert bucket.acquire_blocking() == pytest.approx(0.5)


def test_a_bucket_needs_a_positive_rate():
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimits(FakeClock()).bucket("x", rate=0)
