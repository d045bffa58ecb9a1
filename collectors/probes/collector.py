"""The probe kinds on one base: run the probe under a deadline, time its phases, judge it.

A probe that finds the service down is a good run (`vigil_up 1`): the agent worked, and
`vigil_probe_success 0` says what it found, with the reason as the job's verdict (the status
page's Services board, `vigil once`); the store keeps every change of it. Only a fault of
vigil's own (a bug, a secret it cannot read) fails the run: then vigil could not tell.
The probe's own deadline ends a little before the job's timeout, so a silent service is a
finding ("no answer within 4.5s, during tls"), never a job that timed out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import ClassVar, TypeVar

from agent.collector import Collector, Emitter
from agent.model import Verdict
from agent.schema import TargetConfig
from collectors.probes.metrics import DURATION, SUCCESS

UP, DOWN = "ok", "down"
MARGIN = 0.1  # of the job's timeout, at most MAX_MARGIN seconds: left to report a probe that ran out of time
MAX_MARGIN = 1.0

C = TypeVar("C", bound=TargetConfig)


class ProbeFailed(Exception):
    """The service did not answer as expected; the text is the reason, for people."""


class Phases:
    """The duration of each phase of one probe, and the phase under way (for a reason)."""

    def __init__(self, monotonic) -> None:
        self._monotonic = monotonic
        self._started = monotonic()
        self.current = ""
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started, self.current = self._monotonic(), name
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self._monotonic() - started
        self.current = ""  # only when it ended: a phase the deadline cut short stays named for the reason

    def total(self) -> float:
        return self._monotonic() - self._started


class Probe(Collector[C]):
    """A probe kind: subclasses write `probe()`, which times its phases and raises ProbeFailed."""

    BOARD: ClassVar[str] = "Services"

    async def probe(self, out: Emitter, phases: Phases) -> None:
        raise NotImplementedError

    def notes(self) -> Mapping[str, str]:
        """Findings for the verdict that do not fail the probe (TLS 1.0 still offered)."""
        return {}

    def deadline(self) -> float:
        return self.ctx.timeout - min(MAX_MARGIN, MARGIN * self.ctx.timeout)

    async def collect(self, out: Emitter, due: frozenset[str]) -> None:
        phases = Phases(self.ctx.clock.monotonic)
        deadline = self.deadline()
        try:
            async with asyncio.timeout(deadline):
                await self.probe(out, phases)
        except ProbeFailed as failure:
            reason = str(failure)
        except TimeoutError:
            during = f", during {phases.current}" if phases.current else ""
            reason = f"no answer within {deadline:g}s{during}"
        else:
            reason = ""
        phases.seconds["total"] = phases.total()
        for phase, seconds in phases.seconds.items():
            out.gauge(DURATION, seconds, phase=phase)
        out.gauge(SUCCESS, 0 if reason else 1)
        out.judge(Verdict(DOWN if reason else UP, reason, notes=self.notes()))


# --- the database kinds (postgres, mysql): each protocol in its own module, imported only when used

import importlib  # noqa: E402

from collectors.probes.config import DatabaseConfig, MysqlConfig, PostgresConfig  # noqa: E402
from collectors.probes.metrics import MYSQL_METRICS, POSTGRES_METRICS  # noqa: E402

D = TypeVar("D", bound=DatabaseConfig)


class DatabaseProbe(Probe[D]):
    """A login, a query under a statement timeout, the server's role, lag and connections, through the
    protocol module PROTOCOL; what a target keeps between its runs (its TLS context, the oldest TLS version
    the server accepts) is `kept`."""

    PROTOCOL: ClassVar[str]

    def __init__(self, config: D, ctx) -> None:
        super().__init__(config, ctx)
        database = importlib.import_module("collectors.probes.database")  # by name: it imports this module
        self.kept = database.Kept(ctx.clock.monotonic)

    def notes(self) -> Mapping[str, str]:
        return self.kept.oldest.notes()

    async def probe(self, out: Emitter, phases: Phases) -> None:
        await importlib.import_module(self.PROTOCOL).probe(self.config, out, phases, self.kept)


class PostgresProbe(DatabaseProbe[PostgresConfig]):
    """`kind: postgres`."""

    Config = PostgresConfig
    METRICS = POSTGRES_METRICS
    PROTOCOL = "collectors.probes.postgres"


class MysqlProbe(DatabaseProbe[MysqlConfig]):
    """`kind: mysql` (MariaDB or MySQL)."""

    Config = MysqlConfig
    METRICS = MYSQL_METRICS
    PROTOCOL = "collectors.probes.mysql"
