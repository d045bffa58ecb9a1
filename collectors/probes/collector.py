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
from collections.abc import Mapping
from typing import ClassVar, TypeVar

from agent.collector import Collector, Emitter
from agent.model import Verdict
from agent.schema import TargetConfig
from collectors.probes.config import HttpConfig
from collectors.probes.http import HttpCheck
from collectors.probes.metrics import DURATION, HTTP_CONDITIONS, HTTP_METRICS, SUCCESS
from collectors.probes.phases import Phases, ProbeFailed

UP, DOWN = "ok", "down"
MARGIN = 0.1  # of the job's timeout, at most MAX_MARGIN seconds: left to report a probe that ran out of time
MAX_MARGIN = 1.0

C = TypeVar("C", bound=TargetConfig)


class Probe(Collector[C]):
    """A probe kind: subclasses write `probe()`, which times its phases and raises ProbeFailed."""

    BOARD: ClassVar[str] = "Services"
    SHARED_PAGE: ClassVar[bool] = True  # README.md: a section per kind, with its own blocks, however many there are

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


# --- http ---

class HttpProbe(Probe[HttpConfig]):
    """`kind: http`: one request, its answer judged (collectors/probes/http.py)."""

    Config = HttpConfig
    METRICS = HTTP_METRICS
    CONDITIONS = HTTP_CONDITIONS

    def open(self) -> None:
        self._check = HttpCheck(self.config, self.ctx.clock.monotonic)

    async def probe(self, out: Emitter, phases: Phases) -> None:
        await self._check.run(out, phases)

    def notes(self) -> Mapping[str, str]:
        return self._check.notes()
