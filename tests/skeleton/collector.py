"""`kind: counting`: counts its runs."""

from __future__ import annotations

from agent.collector import Collector, Emitter
from tests.skeleton.config import CountingConfig
from tests.skeleton.metrics import CONDITIONS, METRICS, TICKS


class Counting(Collector[CountingConfig]):
    """Counts its runs: a blocking collector (plain methods run in a thread of their own)."""

    Config = CountingConfig
    METRICS = METRICS
    CONDITIONS = CONDITIONS

    def __init__(self, config, ctx):
        super().__init__(config, ctx)  # no I/O here
        self.runs = config.start
        self.opens = self.closes = 0

    def open(self) -> None:
        self.opens += 1  # a real collector connects here

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        self.runs += 1
        out.gauge(TICKS, self.runs)

    def close(self) -> None:
        self.closes += 1
