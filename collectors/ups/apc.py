"""APC PowerNet-MIB (enterprise 318) UPS objects: every figure read is a scalar or a fixed
table cell, so one GET per poll, three-phase units included.

The high-precision objects (tenths) are asked for beside the basic/advanced ones and win
when the card has them; older cards answer noSuchObject for them. PowerNet has no alarm
table for UPSes: the bounded alarm set is derived from the states the card reports.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agent.collector import Emitter
from collectors.ups.metrics import Reading, integer, number, ratio, text
from collectors.ups.mib import NoUpsObjects
from collectors.ups.snmp import Session

A = "1.3.6.1.4.1.318.1.1.1."
MODEL, FIRMWARE, SERIAL = A + "1.1.1.0", A + "1.2.1.0", A + "1.2.3.0"
BATTERY_STATUS, TIME_ON_BATTERY = A + "2.1.1.0", A + "2.1.2.0"
CAPACITY, TEMPERATURE, RUNTIME, REPLACE, BATTERY_VOLTAGE = (A + "2.2.1.0", A + "2.2.2.0", A + "2.2.3.0",
                                                            A + "2.2.4.0", A + "2.2.8.0")
HP_CAPACITY, HP_TEMPERATURE, HP_BATTERY_VOLTAGE = A + "2.3.1.0", A + "2.3.2.0", A + "2.3.4.0"
INPUT_VOLTAGE, INPUT_FREQUENCY, HP_INPUT_VOLTAGE, HP_INPUT_FREQUENCY = (A + "3.2.1.0", A + "3.2.4.0",
                                                                        A + "3.3.1.0", A + "3.3.4.0")
OUTPUT_STATUS = A + "4.1.1.0"
OUTPUT_VOLTAGE, OUTPUT_FREQUENCY, OUTPUT_LOAD = A + "4.2.1.0", A + "4.2.2.0", A + "4.2.3.0"
HP_OUTPUT_VOLTAGE, HP_OUTPUT_FREQUENCY, HP_OUTPUT_LOAD = A + "4.3.1.0", A + "4.3.2.0", A + "4.3.3.0"
TEST_RESULT, TEST_DATE = A + "7.2.3.0", A + "7.2.4.0"
COMM_STATUS = A + "8.1.0"
# Three-phase cards (Symmetra PX, Galaxy): upsPhaseInputVoltage, upsPhaseOutputVoltage and
# upsPhaseOutputPercentLoad of table 1, phase 1-3, asked for by name in the same GET:
# single-phase cards answer noSuchObject for them and keep their basic figures.
PHASES = ("1", "2", "3")
PHASE_INPUT_VOLTAGE = {p: A + f"9.2.3.1.3.1.1.{p}" for p in PHASES}
PHASE_OUTPUT_VOLTAGE = {p: A + f"9.3.3.1.3.1.1.{p}" for p in PHASES}
PHASE_LOAD = {p: A + f"9.3.3.1.10.1.1.{p}" for p in PHASES}
SCALARS = (MODEL, FIRMWARE, SERIAL, BATTERY_STATUS, TIME_ON_BATTERY, CAPACITY, TEMPERATURE, RUNTIME, REPLACE,
           BATTERY_VOLTAGE, HP_CAPACITY, HP_TEMPERATURE, HP_BATTERY_VOLTAGE, INPUT_VOLTAGE, INPUT_FREQUENCY,
           HP_INPUT_VOLTAGE, HP_INPUT_FREQUENCY, OUTPUT_STATUS, OUTPUT_VOLTAGE, OUTPUT_FREQUENCY, OUTPUT_LOAD,
           HP_OUTPUT_VOLTAGE, HP_OUTPUT_FREQUENCY, HP_OUTPUT_LOAD, TEST_RESULT, TEST_DATE, COMM_STATUS,
           *PHASE_INPUT_VOLTAGE.values(), *PHASE_OUTPUT_VOLTAGE.values(), *PHASE_LOAD.values())

# upsBasicBatteryStatus: batteryInFaultCondition(4) is a bad battery, not an empty one
BATTERY_STATUSES = {1: "unknown", 2: "normal", 3: "low", 4: "unknown"}
# upsBasicOutputStatus, folded onto the shared output sources
OUTPUT_SOURCES = {1: "unknown", 2: "normal", 3: "battery", 4: "boost", 5: "off", 6: "bypass", 7: "off",
                  8: "unknown", 9: "bypass", 10: "bypass", 11: "off", 12: "reducer", 13: "normal", 14: "normal",
                  15: "battery", 16: "bypass", 17: "bypass", 18: "normal", 19: "normal", 20: "normal"}
TEST_PASSED = {1: True, 2: False}  # ok, failed; invalidTest and inProgress are unknown
DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%y", "%Y-%m-%d")  # cards print mm/dd/yyyy; some firmware ISO dates


async def read(session: Session, out: Emitter, now: float) -> Reading:
    v = await session.get(out, SCALARS)
    if all(v.get(oid) is None for oid in SCALARS):
        raise NoUpsObjects(f"UPS {session.name} ({session.where}): no UPS objects (PowerNet-MIB): "
                        "the device answers SNMP but is not an APC UPS, or set `mib: rfc1628`")
    status = integer(v.get(BATTERY_STATUS))
    source = OUTPUT_SOURCES.get(integer(v.get(OUTPUT_STATUS)))
    replace = {1: False, 2: True}.get(integer(v.get(REPLACE)))
    loads = _phases(v, PHASE_LOAD, ratio) or _phase(_first(ratio(v.get(HP_OUTPUT_LOAD), 0.001),
                                                           ratio(v.get(OUTPUT_LOAD))))
    passed = TEST_PASSED.get(integer(v.get(TEST_RESULT)))
    reading = Reading(
        vendor="APC", model=text(v.get(MODEL)), serial=text(v.get(SERIAL)), firmware=text(v.get(FIRMWARE)),
        battery_status=BATTERY_STATUSES.get(status),
        output_source=source,
        on_battery=None if source in (None, "unknown") else source == "battery",
        charge=_first(ratio(v.get(HP_CAPACITY), 0.001), ratio(v.get(CAPACITY))),
        runtime=number(v.get(RUNTIME), 0.01),
        time_on_battery=number(v.get(TIME_ON_BATTERY), 0.01),
        temperature=_first(number(v.get(HP_TEMPERATURE), 0.1), number(v.get(TEMPERATURE))),
        battery_voltage=_first(number(v.get(HP_BATTERY_VOLTAGE), 0.1), number(v.get(BATTERY_VOLTAGE))),
        replace=replace,
        input_frequency=_first(number(v.get(HP_INPUT_FREQUENCY), 0.1), number(v.get(INPUT_FREQUENCY))),
        output_frequency=_first(number(v.get(HP_OUTPUT_FREQUENCY), 0.1), number(v.get(OUTPUT_FREQUENCY))),
        input_voltage=_phases(v, PHASE_INPUT_VOLTAGE, number) or _phase(
            _first(number(v.get(HP_INPUT_VOLTAGE), 0.1), number(v.get(INPUT_VOLTAGE)))),
        output_voltage=_phases(v, PHASE_OUTPUT_VOLTAGE, number) or _phase(
            _first(number(v.get(HP_OUTPUT_VOLTAGE), 0.1), number(v.get(OUTPUT_VOLTAGE)))),
        load=loads,
        selftest_passed=passed,
        selftest_time=_date(v.get(TEST_DATE)),
    )
    reading.alarms = {name for name, active in (
        ("on_battery", source == "battery"), ("on_bypass", source == "bypass"), ("output_off", source == "off"),
        ("low_battery", status == 3), ("battery_bad", status == 4 or bool(replace)),
        ("overload", any(value > 1.0 for value in loads.values())), ("selftest_failed", passed is False),
        ("communications_lost", integer(v.get(COMM_STATUS)) == 2)) if active}
    return reading


def _first(*values: float | None) -> float | None:
    return next((value for value in values if value is not None), None)


def _phase(value: float | None) -> dict[str, float]:
    return {} if value is None else {"1": value}


def _phases(v: dict[str, object], oids: dict[str, str], parse) -> dict[str, float]:
    parsed = {phase: parse(v.get(oid)) for phase, oid in oids.items()}
    return {phase: value for phase, value in parsed.items() if value is not None}


def _date(value: object) -> float | None:
    """A card's date string (no time of day, no zone) as midnight UTC; None when empty or odd."""
    raw = text(value)
    for layout in DATE_FORMATS:
        try:
            return datetime.strptime(raw, layout).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None
