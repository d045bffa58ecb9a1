"""`kind: nut`: a UPS behind Network UPS Tools' upsd, over its line protocol (TCP 3493).

One persistent connection per upsd (collectors/nut/session.py, asyncio streams):
`STARTTLS` when upsd offers it, `USERNAME`/`PASSWORD` when configured, then one
`LIST VAR <ups>` per target and poll; upsd drops it after 60 s of silence, and the
agent polls once more on a new one (SessionLost). The
variables map onto the same `vigil_ups_*` families as SNMP. NUT has no time-on-battery
variable: it is counted from the first poll that saw `OB`.
"""

from __future__ import annotations

from typing import ClassVar

from agent.collector import Collector, Emitter
from collectors.nut.config import NutConfig
from collectors.nut.metrics import CONDITIONS, METRICS
from collectors.nut.session import NutError, Session, SessionClosed, acquire, release
from collectors.nut.variables import parse, split
from collectors.ups.metrics import emit

ERRORS = {
    "UNKNOWN-UPS": "upsd has no UPS named `{ups}` (ERR UNKNOWN-UPS): check `ups:` (`upsc -l {host}` lists them)",
    "DATA-STALE": "upsd has no fresh data for `{ups}` (ERR DATA-STALE): the driver lost the UPS; check its cable "
                  "and the driver's log",
    "DRIVER-NOT-CONNECTED": "upsd's driver for `{ups}` is not running (ERR DRIVER-NOT-CONNECTED)",
    "ACCESS-DENIED": "upsd refused the login (ERR ACCESS-DENIED): check `username`/`password` and upsd.users",
    "INVALID-PASSWORD": "upsd refused the password (ERR INVALID-PASSWORD): check `password`",
    "INVALID-USERNAME": "upsd refused the user name (ERR INVALID-USERNAME): check `username`",
}
MAX_REPLY_LINES = 2000  # a LIST VAR of a real UPS is 30-150 lines


class NutCollector(Collector[NutConfig]):
    Config = NutConfig
    METRICS = METRICS
    CONDITIONS = CONDITIONS
    CONCURRENCY: ClassVar[int | None] = 500

    def __init__(self, config: NutConfig, ctx):
        super().__init__(config, ctx)
        self.session: Session | None = None
        self._on_battery_since: float | None = None

    @property
    def _where(self) -> str:
        return f"NUT {self.config.ups}@{self.config.host}:{self.config.port}"

    async def open(self) -> None:
        c = self.config
        self.session = await acquire(c.host, c.port, c.nut_timeout, c.tls, c.ca_file, c.username, c.password)

    async def close(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            await release(session)

    async def collect(self, out: Emitter, due: frozenset[str]) -> None:
        if self.session is not None and self.session.broken:  # another target's request broke it
            await self.close()
        if self.session is None:
            await self.open()
        variables = await self._list_vars(out)
        now = self.ctx.clock.time()
        reading = parse(variables)
        if reading.on_battery:
            self._on_battery_since = self._on_battery_since or now
        else:
            self._on_battery_since = None
        reading.time_on_battery = now - self._on_battery_since if self._on_battery_since else 0.0
        emit(out, reading)

    async def _list_vars(self, out: Emitter) -> dict[str, str]:
        """One LIST VAR, read whole under the session's lock (its lines must not interleave with another's)."""
        ups = self.config.ups
        counted = False
        try:
            async with self.session.turn():
                first = await self.session.command(f"LIST VAR {ups}")
                if not first.startswith(f"BEGIN LIST VAR {ups}"):
                    counted = True
                    out.request("nut", _code(first))
                    raise NutError(f"{self._where}: {self._explain(first)}")
                variables: dict[str, str] = {}
                for _ in range(MAX_REPLY_LINES):
                    line = await self.session.line()
                    if line.startswith("END LIST VAR"):
                        counted = True
                        out.request("nut", "ok")
                        self.session.done()
                        return variables
                    words = split(line)
                    if len(words) == 4 and words[0] == "VAR":
                        variables[words[2]] = words[3]
                self.session.broken = True  # the rest of this reply is still on the wire
                raise NutError(f"{self._where}: LIST VAR did not end after {MAX_REPLY_LINES} lines")
        except SessionClosed:
            raise  # nothing was asked of this upsd yet: the agent asks again on a new session
        except NutError:
            if not counted:  # the transport failed: no answer to count by its code
                out.request("nut", "error")
            raise

    def _explain(self, reply: str) -> str:
        error = reply.removeprefix("ERR ").split(" ")[0] if reply.startswith("ERR ") else ""
        template = ERRORS.get(error)
        if template:
            return template.format(ups=self.config.ups, host=self.config.host)
        return f"unexpected reply {reply[:80]!r}"


def _code(reply: str) -> str:
    """A bounded request code: the ERR word of a known error, else error."""
    error = reply.removeprefix("ERR ").split(" ")[0] if reply.startswith("ERR ") else ""
    return error.lower().replace("-", "_") if error in ERRORS else "error"
