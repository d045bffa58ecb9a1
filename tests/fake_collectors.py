"""Collectors that exist only for tests, built on docs/contributing.md's skeleton (tests/skeleton/).

Tests add them to the registry with monkeypatch (or `python -m tests.run_agent`), as a
real kind is listed. `counting` is the skeleton itself; the others vary one behaviour.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Literal

from agent.collector import Collector, Emitter, SessionLost, Signal
from agent.model import MetricSpec
from agent.secrets import Secret
from tests.skeleton import collector as skeleton
from tests.skeleton.config import CountingConfig
from tests.skeleton.metrics import TICKS

SLOW_TICKS = MetricSpec("vigil_test_slow_ticks", "gauge", "Runs of the slow signal so far.")
RELEASE = threading.Event()  # set by a test to let hanging collectors go
INSTANCES: list[Collector] = []  # every instance built, to count opens and closes


class Counting(skeleton.Counting):
    """The skeleton, each instance kept in INSTANCES (the scheduler's tests count its opens and closes)."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        INSTANCES.append(self)


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


KINDS = {"counting": "tests.skeleton.collector:Counting",
         **{cls.Config.model_fields["kind"].annotation.__args__[0]: f"{__name__}:{cls.__name__}"
            for cls in (Hanging, Silent, Failing, Flaky, Slow, Freezing, Secretive)}}
