"""The one source of time for the scheduler, the checks and the transports, so tests can move it.

Code on the event loop sleeps with `await clock.sleep()`; code that runs in a worker
thread (paramiko, a sync HTTP client) waits with `clock.wait()`, the one place in the
product allowed to block on time. A test's FakeClock makes both return at once.

Durations and "is it due" are measured on the monotonic clock. Deadlines are wall times
(a backup due by 05:00), judged by `trusted_time()`: the wall clock, except just after it
stepped forward (`date -s`, a wrong time server), when vigil judges by the time it has
measured passing, so that a window the clock jumped over is not called missed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from agent.units import format_duration

log = logging.getLogger(__name__)

STEP = 2.0  # seconds the wall clock may move apart from the monotonic one between two readings
SLEW = 0.001  # and per second between them: twice the most an NTP daemon slews a clock (500 ppm)
BELIEVED_AFTER = 3600.0  # a step forward that holds this long is believed: NTP corrects a wrong one sooner


class Clock:
    """Wall time for timestamps, monotonic time for durations, and sleeping."""

    def __init__(self) -> None:
        self._steps = StepWatch()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def trusted_time(self) -> float:
        """The wall time to judge deadlines by: `time()`, or less while it has just stepped forward."""
        return self._steps.trusted(self.time, self.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def wait(self, seconds: float) -> None:
        """Block the calling thread; never call it on the event loop."""
        if seconds > 0:
            time.sleep(seconds)


class StepWatch:
    """Tells a step of the wall clock from time passing, by the monotonic clock; logs each step once.

    Each reading in step becomes the base. A wall clock found ahead of the base plus the
    monotonic time since is a step forward: until it comes back, or for BELIEVED_AFTER at
    most, the trusted time is the base plus the monotonic time since. A step back is
    followed at once: what it makes vigil judge again has passed already.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # evaluations read it from their own threads
        self._base: tuple[float, float] | None = None  # (wall, monotonic) of the last reading in step
        self._ahead_since: float | None = None  # monotonic time the wall clock was first found ahead

    def trusted(self, wall_clock: Callable[[], float], monotonic_clock: Callable[[], float]) -> float:
        with self._lock:
            wall, now = wall_clock(), monotonic_clock()
            if self._base is None:
                self._base = (wall, now)
                return wall
            base_wall, base_now = self._base
            measured = base_wall + (now - base_now)
            apart, allowed = wall - measured, STEP + SLEW * (now - base_now)
            if apart > allowed:
                if self._ahead_since is None:
                    self._ahead_since = now
                    log.warning("wall clock stepped forward by=%s measured=%s; backup deadlines are judged by "
                                "the time measured until it is corrected or holds for %s", format_duration(apart),
                                format_duration(now - base_now), format_duration(BELIEVED_AFTER))
                if now - self._ahead_since < BELIEVED_AFTER:
                    return measured
                log.warning("wall clock step forward held for %s: believed", format_duration(BELIEVED_AFTER))
            elif apart < -allowed:
                log.warning("wall clock stepped back by=%s", format_duration(-apart))
            elif self._ahead_since is not None:
                log.info("wall clock back in step")
            self._base, self._ahead_since = (wall, now), None
            return wall
