"""Collectors that exist only for tests, written exactly as docs/contributing.md's skeleton.

Tests add them to the registry with monkeypatch (or `python -m tests.run_agent`), as a
real kind is listed. `Counting` is the skeleton itself; the others vary one behaviour.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.collector import Collector, Emitter, SessionLost, Signal
from agent.model import MetricSpec
from agent.schema import TargetConfig
from agent.secrets import Secret

TICKS = MetricSpec("vigil_test_ticks", "gauge", "Runs so far.")
SLOW_TICKS = MetricSpec("vigil_test_slow_ticks", "gauge", "Runs of the slow signal so far.")
RELEASE = threading.Event()  # set by a test to let hanging collectors go
INSTANCES: list[Collector] = []  # every instance built, to count opens and closes


# --- the skeleton of docs/contributing.md, from here -----------------------------------
class CountingConfig(TargetConfig):
    kind: Literal["counting"]
    start: int = Field(0, description="the first value of the tick counter")


class Counting(Collector[CountingConfig]):
    """Counts its runs: a blocking collector (plain methods run in a thread of their own)."""

    Config = CountingConfig
    METRICS = (TICKS,)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)  # no I/O here
        self.runs = config.start
        self.opens = self.closes = 0
        INSTANCES.append(self)

    def open(self) -> None:
        self.opens += 1  # a real collector connects here

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        self.runs += 1
        out.gauge(TICKS, self.runs)

    def close(self) -> None:
        self.closes += 1
# --- to here ------------------------------------------------------------------------------


class Hanging(Counting):
    class Config(CountingConfig):
        kind: Literal["hanging"]

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        RELEASE.wait()
        super().collect(out, due)


class Silent(Counting):
    """An async collector whose device never answers: the timeout must cancel it."""

    cancelled = 0

    class Config(CountingConfig):
        kind: Literal["silent"]

    async def collect(self, out: Emitter, due: frozenset[str]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            Silent.cancelled += 1
            raise


class Failing(Counting):
    class Config(CountingConfig):
        kind: Literal["failing"]

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        raise ConnectionRefusedError(111, "Connection refused")


class Flaky(Counting):
    """Fails while the file `fail_when` exists, so a test can break it at will."""

    class Config(CountingConfig):
        kind: Literal["flaky"]
        fail_when: Path

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        if self.config.fail_when.exists():
            raise TimeoutError("device did not answer")
        super().collect(out, due)


class Dropping(Counting):
    """A peer that closes the kept session while `drop_when` exists (found at the next run), and
    refuses new sessions while `down_when` exists; `fresh_too` is a collector bug that calls
    even a new session lost."""

    class Config(CountingConfig):
        kind: Literal["dropping"]
        drop_when: Path
        down_when: Path | None = None
        fresh_too: bool = False

    def open(self) -> None:
        super().open()
        if self.config.down_when is not None and self.config.down_when.exists():
            raise ConnectionRefusedError(111, "Connection refused")

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        kept = self.runs > self.config.start
        if self.config.drop_when.exists() and (kept or self.config.fresh_too):
            raise SessionLost("the peer closed the session")
        super().collect(out, due)


class Slow(Counting):
    """A main signal and a slow `updates` signal, which fails while `fail_when` exists."""

    SIGNALS = {"main": Signal(), "updates": Signal(every=3600)}
    METRICS = (TICKS, SLOW_TICKS)

    class Config(CountingConfig):
        kind: Literal["slow"]
        fail_when: Path | None = None

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.slow_runs = 0

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        super().collect(out, due)
        if "updates" in due:
            with out.signal("updates"):
                self.slow_runs += 1
                if self.config.fail_when is not None and self.config.fail_when.exists():
                    raise PermissionError("403 Forbidden")
                out.gauge(SLOW_TICKS, self.slow_runs)


class Freezing(Counting):
    """A bug that blocks the event loop (a blocking call in an async collect) while `freeze_when` exists."""

    class Config(CountingConfig):
        kind: Literal["freezing"]
        freeze_when: Path

    async def collect(self, out: Emitter, due: frozenset[str]) -> None:
        while self.config.freeze_when.exists():
            time.sleep(0.1)  # noqa: ASYNC251 — the bug this kind stands for
        super().collect(out, due)


class Secretive(Counting):
    class Config(CountingConfig):
        kind: Literal["secretive"]
        password: Secret


KINDS = {cls.Config.model_fields["kind"].annotation.__args__[0]: f"{__name__}:{cls.__name__}"
         for cls in (Counting, Hanging, Silent, Failing, Flaky, Slow, Freezing, Secretive)}
