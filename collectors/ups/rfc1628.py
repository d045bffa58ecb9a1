"""RFC 1628 UPS-MIB (1.3.6.1.2.1.33): one GET of the scalars, one GETBULK of the small tables.

The GET tells how many input and output lines (phases) and alarms there are, so the
GETBULK asks for just enough rows of the five columns read (input frequency and voltage,
output voltage and load, alarm descriptions): two PDUs per poll, three phases included.
"""

from __future__ import annotations

from agent.collector import Emitter
from collectors.ups.metrics import Reading, integer, number, ratio, text
from collectors.ups.mib import NoUpsObjects
from collectors.ups.snmp import Session

B = "1.3.6.1.2.1.33.1."
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
MANUFACTURER, MODEL, SOFTWARE = B + "1.1.0", B + "1.2.0", B + "1.3.0"
BATTERY_STATUS, SECONDS_ON_BATTERY, MINUTES_REMAINING, CHARGE = B + "2.1.0", B + "2.2.0", B + "2.3.0", B + "2.4.0"
BATTERY_VOLTAGE, BATTERY_TEMPERATURE = B + "2.5.0", B + "2.7.0"
LINE_BADS, INPUT_LINES = B + "3.1.0", B + "3.2.0"
OUTPUT_SOURCE, OUTPUT_FREQUENCY, OUTPUT_LINES = B + "4.1.0", B + "4.2.0", B + "4.3.0"
ALARMS_PRESENT = B + "6.1.0"
TEST_SUMMARY, TEST_START = B + "7.3.0", B + "7.5.0"
SCALARS = (SYS_UPTIME, MANUFACTURER, MODEL, SOFTWARE, BATTERY_STATUS, SECONDS_ON_BATTERY, MINUTES_REMAINING,
           CHARGE, BATTERY_VOLTAGE, BATTERY_TEMPERATURE, LINE_BADS, INPUT_LINES, OUTPUT_SOURCE,
           OUTPUT_FREQUENCY, OUTPUT_LINES, ALARMS_PRESENT, TEST_SUMMARY, TEST_START)

INPUT_FREQUENCY_COL, INPUT_VOLTAGE_COL = B + "3.3.1.2", B + "3.3.1.3"
OUTPUT_VOLTAGE_COL, OUTPUT_LOAD_COL = B + "4.4.1.2", B + "4.4.1.5"
ALARM_DESCR_COL = B + "6.2.1.2"
COLUMNS = (INPUT_FREQUENCY_COL, INPUT_VOLTAGE_COL, OUTPUT_VOLTAGE_COL, OUTPUT_LOAD_COL, ALARM_DESCR_COL)
MAX_ROWS = 32  # more rows than this is not a UPS we know; bounded labels

BATTERY_STATUSES = {1: "unknown", 2: "normal", 3: "low", 4: "depleted"}
OUTPUT_SOURCES = {1: "unknown", 2: "off", 3: "normal", 4: "bypass", 5: "battery", 6: "boost", 7: "reducer"}
WELL_KNOWN_ALARM = B + "6.3."
WELL_KNOWN_ALARMS = {1: "battery_bad", 2: "on_battery", 3: "low_battery", 4: "depleted_battery",
                     5: "temperature_bad", 6: "input_bad", 7: "output_bad", 8: "overload", 9: "on_bypass",
                     10: "bypass_bad", 11: "output_off", 12: "ups_off", 13: "charger_failed", 14: "output_off",
                     15: "ups_off", 16: "fan_failure", 17: "fuse_failure", 18: "general_fault",
                     19: "selftest_failed", 20: "communications_lost", 21: "awaiting_power",
                     22: "shutdown_pending", 23: "shutdown_imminent", 24: "test_in_progress"}
TEST_PASSED = {1: True, 2: True, 3: False}  # donePass, doneWarning, doneError; aborted/inProgress/none: unknown


async def read(session: Session, out: Emitter, now: float) -> Reading:
    v = await session.get(out, SCALARS)
    if all(v.get(oid) is None for oid in SCALARS[1:]):
        raise NoUpsObjects(f"UPS {session.name} ({session.where}): no UPS objects (UPS-MIB): "
                        "the device answers SNMP but is not a UPS, or set `mib: apc`")
    alarm_count = integer(v.get(ALARMS_PRESENT))
    rows = min(MAX_ROWS, max(integer(v.get(INPUT_LINES)) or 1, integer(v.get(OUTPUT_LINES)) or 1, alarm_count or 0))
    table = columns(await session.bulk(out, COLUMNS, rows), COLUMNS)
    source = OUTPUT_SOURCES.get(integer(v.get(OUTPUT_SOURCE)))
    seconds_on_battery = number(v.get(SECONDS_ON_BATTERY))
    alarms = {_alarm(descr) for descr in table[ALARM_DESCR_COL].values()}
    frequencies = table[INPUT_FREQUENCY_COL]
    return Reading(
        vendor=text(v.get(MANUFACTURER)), model=text(v.get(MODEL)), firmware=text(v.get(SOFTWARE)),
        battery_status=BATTERY_STATUSES.get(integer(v.get(BATTERY_STATUS))),
        output_source=source,
        on_battery=(source == "battery") if source and source != "unknown" else (
            None if seconds_on_battery is None else seconds_on_battery > 0),
        charge=ratio(v.get(CHARGE)),
        runtime=number(v.get(MINUTES_REMAINING), 60),
        time_on_battery=seconds_on_battery,
        temperature=number(v.get(BATTERY_TEMPERATURE)),
        battery_voltage=number(v.get(BATTERY_VOLTAGE), 0.1),
        replace="battery_bad" in alarms,
        input_frequency=number(frequencies[min(frequencies)], 0.1) if frequencies else None,
        output_frequency=number(v.get(OUTPUT_FREQUENCY), 0.1),
        input_voltage=_phases(table[INPUT_VOLTAGE_COL], number),
        output_voltage=_phases(table[OUTPUT_VOLTAGE_COL], number),
        load=_phases(table[OUTPUT_LOAD_COL], ratio),
        alarms=alarms, alarm_count=alarm_count,
        selftest_passed=TEST_PASSED.get(integer(v.get(TEST_SUMMARY))),
        selftest_time=_test_time(v.get(SYS_UPTIME), v.get(TEST_START), now),
        line_failures=number(v.get(LINE_BADS)),
    )


def columns(binds: list[tuple[str, object]], wanted: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """{column: {row index: value}} from a GETBULK; a trailing `.0` some agents add after
    the row index is ignored, and rows beyond a column's end (the next column) are dropped."""
    table: dict[str, dict[str, object]] = {column: {} for column in wanted}
    for oid, value in binds:
        for column in wanted:
            if oid.startswith(column + ".") and value is not None:
                index = oid[len(column) + 1:].split(".")[0]
                table[column].setdefault(index, value)
    return table


def _phases(rows: dict[str, object], parse) -> dict[str, float]:
    parsed = {index: parse(value) for index, value in rows.items()}
    return {index: value for index, value in parsed.items() if value is not None}


def _alarm(descr: object) -> str:
    if isinstance(descr, str) and descr.startswith(WELL_KNOWN_ALARM):
        return WELL_KNOWN_ALARMS.get(integer(descr[len(WELL_KNOWN_ALARM):].split(".")[0]), "other")
    return "other"


def _test_time(uptime: object, start: object, now: float) -> float | None:
    """upsTestStartTime is the sysUpTime (hundredths) when the test began; 0 = never."""
    up, began = number(uptime), number(start)
    if not up or not began or began > up:
        return None
    return round(now - (up - began) / 100)
