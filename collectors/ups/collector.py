"""`kind: ups`: a UPS over SNMP (v2c or v3 authPriv), RFC 1628 UPS-MIB or APC PowerNet-MIB.

The MIB is detected once per session from sysObjectID (APC's enterprise 318, else RFC
1628), or set with `mib:`. A poll is then one GET (APC) or one GET plus one GETBULK (RFC
1628), against the 11-13 PDUs of snmp_exporter's modules: 200 cards poll concurrently on
one asyncio engine without threads. Defaults suit slow management cards (3 s x 3 tries).
"""

from __future__ import annotations

from typing import ClassVar

from agent.collector import Collector, Emitter
from collectors.ups import apc, metrics, rfc1628
from collectors.ups.config import UpsConfig
from collectors.ups.mib import NoUpsObjects
from collectors.ups.snmp import Session

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
APC_ENTERPRISE = "1.3.6.1.4.1.318"
READERS = {"rfc1628": rfc1628.read, "apc": apc.read}


class UpsCollector(Collector[UpsConfig]):
    Config = UpsConfig
    METRICS = metrics.METRICS
    CONDITIONS = metrics.CONDITIONS
    CONCURRENCY: ClassVar[int | None] = 500  # asyncio, no threads: a few KB per device in flight

    def __init__(self, config: UpsConfig, ctx):
        super().__init__(config, ctx)
        self.mib: str | None = None if config.mib == "auto" else config.mib
        self.session: Session | None = None

    async def open(self) -> None:
        c = self.config
        # a poll is at most two PDUs, each tried retries + 1 times: all of it inside the job's timeout,
        # so an unanswered device says "no SNMP answer" rather than the job's bare "timed out"
        per_try = min(c.snmp_timeout, 0.9 * self.ctx.timeout / (2 * (c.retries + 1)))
        self.session = Session(c.name, c.host, c.port, c.snmp, per_try, c.retries)
        await self.session.open()

    async def close(self) -> None:
        """Nothing to hang up: the engine and its socket are shared by every device of the loop."""
        self.session = None

    async def collect(self, out: Emitter, due: frozenset[str]) -> None:
        assert self.session is not None, "collect() before open()"  # noqa: S101 — narrows a type; an internal invariant, not input checking
        now = self.ctx.clock.time()
        if self.mib is not None:
            reading = await READERS[self.mib](self.session, out, now)
        else:
            reading = await self._detect(out, now)
        metrics.emit(out, reading)

    async def _detect(self, out: Emitter, now: float) -> metrics.Reading:
        """Try the MIB sysObjectID suggests, then the other: an APC card may speak only RFC 1628
        (or a third-party card enterprise 318); the MIB that answers is kept for the session."""
        found = (await self.session.get(out, [SYS_OBJECT_ID])).get(SYS_OBJECT_ID)
        first = "apc" if isinstance(found, str) and found.startswith(APC_ENTERPRISE + ".") else "rfc1628"
        for mib in (first, "apc" if first == "rfc1628" else "rfc1628"):
            try:
                reading = await READERS[mib](self.session, out, now)
            except NoUpsObjects:
                continue
            self.mib = mib
            return reading
        raise NoUpsObjects(f"UPS {self.config.name} ({self.session.where}): no UPS objects: the device "
                        f"(sysObjectID {found or 'unknown'}) answers SNMP but has neither UPS-MIB nor "
                        "PowerNet-MIB UPS objects; is it a UPS?")
