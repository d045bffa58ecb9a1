"""A clock the tests move by hand, through the agent's one injectable source of time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agent.clock import Clock


class FakeClock(Clock):
    """Time that moves only when told to, or when someone sleeps on it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        super().__init__()
        self.epoch = start
        self.elapsed = 0.0  # kept apart from the epoch so that tiny sleeps still move it
        self.waits: list[float] = []  # what was slept (async) or waited (threads), in order

    def time(self) -> float:
        return self.epoch + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.elapsed += seconds
        self.waits.append(seconds)
        await asyncio.sleep(0)

    def wait(self, seconds: float) -> None:
        self.elapsed += max(0.0, seconds)
        self.waits.append(seconds)

    def set(self, when: str) -> None:
        """Move to a UTC time written `YYYY-MM-DD HH:MM`: a later one as time passing (the monotonic
        clock moves as much), an earlier one as the wall clock stepping back."""
        ahead = datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp() - self.time()
        if ahead >= 0:
            self.advance(ahead)
        else:
            self.step(ahead)

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds

    def step(self, seconds: float) -> None:
        """The wall clock alone jumps (`date -s`, an NTP step) while monotonic time runs on."""
        self.epoch += seconds


class RunawayClock(Clock):
    """Each reading is an hour after the last, so any time budget is spent at its first check."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 3600
        return self.now
