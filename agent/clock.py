"""The one source of time for the scheduler and the checks, so tests can move it."""

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
