"""What upsd's replies say: LIST VAR's lines split into words, and NUT's variables (RFC 9271 names) read into
the Reading every UPS kind emits (collectors.ups.metrics)."""

from __future__ import annotations

from datetime import UTC, datetime

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
