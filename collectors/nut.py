"""`kind: nut`: a UPS behind Network UPS Tools' upsd, over its line protocol (TCP 3493).

One persistent connection per upsd (collectors/nut_session.py, asyncio streams):
`STARTTLS` when upsd offers it, `USERNAME`/`PASSWORD` when configured, then one
`LIST VAR <ups>` per target and poll; upsd drops it after 60 s of silence, and the
agent polls once more on a new one (SessionLost). The
variables map onto the same `vigil_ups_*` families as SNMP. NUT has no time-on-battery
variable: it is counted from the first poll that saw `OB`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from agent.collector import Collector, Emitter
from agent.ondisk import CaFile
from agent.schema import Duration, TargetConfig
from agent.secrets import Secret, one_line
from collectors.nut_session import NutError, Session, SessionClosed, acquire, release
from collectors.ups import metrics as ups_metrics
from collectors.ups.metrics import Reading, number, ratio, text

# ups.status flags -> (output source, alarm); the first source found in SOURCE_ORDER wins
FLAG_ALARMS = {"OB": "on_battery", "LB": "low_battery", "RB": "battery_bad", "OVER": "overload",
               "BYPASS": "on_bypass", "OFF": "output_off", "FSD": "shutdown_imminent", "CAL": "test_in_progress"}
SOURCE_ORDER = (("OFF", "off"), ("BYPASS", "bypass"), ("OB", "battery"), ("BOOST", "boost"), ("TRIM", "reducer"),
                ("OL", "normal"))
# ups.alarm is free text; these words put an alarm into the bounded set, the rest is "other"
ALARM_WORDS = (("replace", "battery_bad"), ("battery", "battery_bad"), ("temperature", "temperature_bad"),
               ("overload", "overload"), ("fan", "fan_failure"), ("fuse", "fuse_failure"),
               ("charger", "charger_failed"), ("bypass", "bypass_bad"), ("input", "input_bad"),
               ("output", "output_bad"), ("communication", "communications_lost"), ("fault", "general_fault"))
TEST_RESULTS = (("passed", True), ("warning", True), ("ok", True), ("error", False), ("fail", False))
ERRORS = {
    "UNKNOWN-UPS": "upsd has no UPS named `{ups}` (ERR UNKNOWN-UPS): check `ups:` (`upsc -l {host}` lists them)",
    "DATA-STALE": "upsd has no fresh data for `{ups}` (ERR DATA-STALE): the driver lost the UPS; check its cable "
                  "and the driver's log",
    "DRIVER-NOT-CONNECTED": "upsd's driver for `{ups}` is not running (ERR DRIVER-NOT-CONNECTED)",
    "ACCESS-DENIED": "upsd refused the login (ERR ACCESS-DENIED): check `username`/`password` and upsd.users",
    "INVALID-PASSWORD": "upsd refused the password (ERR INVALID-PASSWORD): check `password`",
    "INVALID-USERNAME": "upsd refused the user name (ERR INVALID-USERNAME): check `username`",
}
Password = Annotated[Secret, one_line("one line of upsd's protocol")]  # a line break would start a command
MAX_REPLY_LINES = 2000  # a LIST VAR of a real UPS is 30-150 lines


class NutCollector(Collector):
    class Config(TargetConfig):
        kind: Literal["nut"]
        host: str = Field(description="The upsd host.", min_length=1)
        port: int = Field(3493, description="upsd's TCP port.", ge=1, le=65535)
        ups: str = Field(description="The UPS name on that upsd (as in `upsc -l`).", min_length=1)
        username: str | None = Field(None, description="An upsd.users user, when upsd asks for one.")
        password: Password | None = Field(None, description="Its password, by reference.")
        tls: Literal["if_offered", "required", "off"] = Field(
            "if_offered", description="STARTTLS: if_offered (use it when upsd has a certificate, verified), "
                                      "required, or off.")
        ca_file: CaFile | None = Field(None, description="A CA file for upsd's certificate; wins over SSL_CERT_FILE.")
        nut_timeout: Duration = Field(5.0, description="How long to wait for each upsd reply.")

    METRICS = tuple(spec for spec in ups_metrics.METRICS if spec is not ups_metrics.LINE_FAILURES)
    CONDITIONS = ups_metrics.CONDITIONS
    CONCURRENCY: ClassVar[int | None] = 500

    def __init__(self, config: Config, ctx):
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
        ups_metrics.emit(out, reading)

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


def split(line: str) -> list[str]:
    """Words of a protocol line; a double-quoted word may hold spaces and backslash escapes."""
    words, word, quoted, escaped, inside = [], [], False, False, False
    for char in line:
        if escaped:
            word.append(char)
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted, inside = not quoted, True
        elif char == " " and not quoted:
            if word or inside:
                words.append("".join(word))
            word, inside = [], False
        else:
            word.append(char)
    if word or inside:
        words.append("".join(word))
    return words


def parse(v: dict[str, str]) -> Reading:
    """NUT variables (RFC 9271 names) to a Reading."""
    flags = set(v.get("ups.status", "").split())
    source = next((name for flag, name in SOURCE_ORDER if flag in flags), None)
    alarms = {FLAG_ALARMS[flag] for flag in flags if flag in FLAG_ALARMS}
    if "ALARM" in flags or v.get("ups.alarm"):
        alarms |= alarm_names(v.get("ups.alarm", "")) or {"other"}
    passed = selftest_result(v.get("ups.test.result", ""))
    if passed is False:
        alarms.add("selftest_failed")
    three = any(f"input.L{n}-N.voltage" in v for n in (1, 2, 3))
    return Reading(
        vendor=text(v.get("ups.mfr") or v.get("device.mfr")), model=text(v.get("ups.model") or v.get("device.model")),
        serial=text(v.get("ups.serial") or v.get("device.serial")), firmware=text(v.get("ups.firmware")),
        battery_status=("low" if "LB" in flags else "normal") if flags & {"OL", "OB"} else None,
        output_source=source or ("unknown" if flags else None),
        on_battery="OB" in flags if flags else None,
        charge=ratio(v.get("battery.charge")),
        runtime=number(v.get("battery.runtime")),
        temperature=number(v.get("battery.temperature") or v.get("ups.temperature")),
        battery_voltage=number(v.get("battery.voltage")),
        replace="RB" in flags if flags else None,
        input_frequency=number(v.get("input.frequency")),
        output_frequency=number(v.get("output.frequency")),
        input_voltage=_phases(v, "input.L{}-N.voltage", "input.voltage", number, three),
        output_voltage=_phases(v, "output.L{}-N.voltage", "output.voltage", number, three),
        load=_phases(v, "output.L{}.power.percent", "ups.load", ratio, three),
        alarms=alarms,
        selftest_passed=passed,
        selftest_time=_date(v.get("ups.test.date", "")),
    )


def _phases(v: dict[str, str], per_phase: str, single: str, parse_value, three: bool) -> dict[str, float]:
    raw = {str(n): v.get(per_phase.format(n)) for n in (1, 2, 3)} if three else {"1": v.get(single)}
    parsed = {phase: parse_value(value) for phase, value in raw.items()}
    return {phase: value for phase, value in parsed.items() if value is not None}


def alarm_names(alarm: str) -> set[str]:
    """ups.alarm holds messages like "Replace battery! Temperature too high!"."""
    names = set()
    for message in filter(None, (part.strip().lower() for part in alarm.replace(";", "!").split("!"))):
        names.add(next((name for word, name in ALARM_WORDS if word in message), "other"))
    return names


def selftest_result(result: str) -> bool | None:
    """"Done and passed", "Done and error", "No test initiated", "In progress"..."""
    lowered = result.lower()
    if not lowered.startswith("done"):
        return None
    return next((ok for word, ok in TEST_RESULTS if word in lowered), None)


def _date(raw: str) -> float | None:
    for layout in ("%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"):
        try:
            return datetime.strptime(raw.strip(), layout).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None
