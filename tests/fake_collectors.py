"""Collectors that exist only for tests: one that hangs, one that fails, one with a secret.

Tests add them to the registry with monkeypatch, exactly as a real kind is listed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

from agent.model import MetricSpec, Sample
from agent.schema import TargetConfig
from agent.secrets import Secret

TICKS = MetricSpec("vigil_test_ticks", "gauge", "Runs so far.")
RELEASE = threading.Event()  # set by a test to let hanging collectors go


class Counting:
    kind = "counting"
    METRICS = (TICKS,)

    class Config(TargetConfig):
        kind: Literal["counting"]

    def __init__(self, config, context=None):
        self.runs = 0

    def collect(self) -> list[Sample]:
        self.runs += 1
        return [Sample(TICKS.name, self.runs)]


class Hanging(Counting):
    kind = "hanging"

    class Config(TargetConfig):
        kind: Literal["hanging"]

    def collect(self) -> list[Sample]:
        RELEASE.wait()
        return super().collect()


class Failing(Counting):
    kind = "failing"

    class Config(TargetConfig):
        kind: Literal["failing"]

    def collect(self) -> list[Sample]:
        raise ConnectionRefusedError(111, "Connection refused")


class Flaky(Counting):
    """Fails while the file `fail_when` exists, so a test can break it at will."""

    kind = "flaky"

    class Config(TargetConfig):
        kind: Literal["flaky"]
        fail_when: Path

    def __init__(self, config, context=None):
        super().__init__(config, context)
        self.fail_when = config.fail_when

    def collect(self) -> list[Sample]:
        if self.fail_when.exists():
            raise TimeoutError("device did not answer")
        return super().collect()


class Secretive(Counting):
    kind = "secretive"

    class Config(TargetConfig):
        kind: Literal["secretive"]
        password: Secret


KINDS = {cls.kind: f"{__name__}:{cls.__name__}" for cls in (Counting, Hanging, Failing, Flaky, Secretive)}
