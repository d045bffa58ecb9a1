"""The one source of time for the scheduler, the checks and the transports, so tests can move it.

Code on the event loop sleeps with `await clock.sleep()`; code that runs in a worker
thread (paramiko, a sync HTTP client) waits with `clock.wait()`, the one place in the
product allowed to block on time. A test's FakeClock makes both return at once.
"""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Wall time for timestamps, monotonic time for durations, and sleeping."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def wait(self, seconds: float) -> None:
        """Block the calling thread; never call it on the event loop."""
        if seconds > 0:
            time.sleep(seconds)
