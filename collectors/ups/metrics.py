"""The `vigil_ups_*` families and the normalisation every UPS source shares.

SNMP (RFC 1628 UPS-MIB, APC PowerNet-MIB) and NUT describe the same facts in different
scales and enums. Each source fills a `Reading` in base units (seconds, volts, hertz,
ratio 0-1, celsius) and `emit` writes it, so rules and dashboards never care how a unit
was polled. A value a device reports as unknown (a negative charge, an empty string) is
None and its series is left out, never exported as a number that looks real.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.collector import Emitter
from agent.model import Condition, MetricSpec

BATTERY_STATUSES = ("normal", "low", "depleted", "unknown")
OUTPUT_SOURCES = ("normal", "battery", "bypass", "boost", "reducer", "off", "unknown")
# The bounded set of alarms, after RFC 1628's upsWellKnownAlarms; anything else is "other".
ALARMS = ("battery_bad", "on_battery", "low_battery", "depleted_battery", "temperature_bad", "input_bad",
          "output_bad", "overload", "on_bypass", "bypass_bad", "output_off", "ups_off", "charger_failed",
          "fan_failure", "fuse_failure", "general_fault", "selftest_failed", "communications_lost",
          "awaiting_power", "shutdown_pending", "shutdown_imminent", "test_in_progress", "other")

PHASE = ("phase",)
ON_BATTERY = MetricSpec("vigil_ups_on_battery", "gauge", "1 when the UPS runs on battery (mains power lost).")
BATTERY_STATUS = MetricSpec("vigil_ups_battery_status", "gauge",
                            "Battery status, one-hot: normal, low, depleted or unknown.", ("status",))
CHARGE = MetricSpec("vigil_ups_battery_charge_ratio", "gauge", "Battery charge remaining, 0 to 1.", unit="ratio")
RUNTIME = MetricSpec("vigil_ups_battery_runtime_seconds", "gauge",
                     "Estimated runtime on battery at the present load.", unit="seconds")
TIME_ON_BATTERY = MetricSpec("vigil_ups_time_on_battery_seconds", "gauge",
                             "Time since the UPS switched to battery; 0 on mains.", unit="seconds")
LOAD = MetricSpec("vigil_ups_load_ratio", "gauge",
                  "Output load as a share of the UPS capacity, per phase (phase 1 on single-phase units).",
                  PHASE, "ratio")
INPUT_VOLTAGE = MetricSpec("vigil_ups_input_voltage_volts", "gauge",
                           "Input (mains) voltage, per phase (phase 1 on single-phase units).", PHASE, "volts")
OUTPUT_VOLTAGE = MetricSpec("vigil_ups_output_voltage_volts", "gauge",
                            "Output voltage, per phase (phase 1 on single-phase units).", PHASE, "volts")
INPUT_FREQUENCY = MetricSpec("vigil_ups_input_frequency_hertz", "gauge", "Input (mains) frequency.", unit="hertz")
OUTPUT_FREQUENCY = MetricSpec("vigil_ups_output_frequency_hertz", "gauge", "Output frequency.", unit="hertz")
TEMPERATURE = MetricSpec("vigil_ups_battery_temperature_celsius", "gauge", "Battery temperature.",
                         unit="celsius")
BATTERY_VOLTAGE = MetricSpec("vigil_ups_battery_voltage_volts", "gauge", "Battery DC voltage.", unit="volts")
REPLACE = MetricSpec("vigil_ups_battery_replace_needed", "gauge", "1 when the UPS asks for a battery replacement.")
ALARM_COUNT = MetricSpec("vigil_ups_alarms", "gauge", "Number of alarms the UPS reports as present.")
ALARM = MetricSpec("vigil_ups_alarm_active", "gauge",
                   "1 for each alarm present, from a bounded set (other = an alarm outside it).", ("alarm",))
SELFTEST_PASSED = MetricSpec("vigil_ups_selftest_passed", "gauge",
                             "Result of the last self-test: 1 passed, 0 failed; absent when none is known.")
SELFTEST_TIME = MetricSpec("vigil_ups_selftest_timestamp_seconds", "gauge",
                           "When the last self-test ran (Unix time).", unit="seconds")
OUTPUT_SOURCE = MetricSpec("vigil_ups_output_source", "gauge",
                           "What feeds the output, one-hot: normal, battery, bypass, boost, reducer, off "
                           "or unknown.", ("source",))
LINE_FAILURES = MetricSpec("vigil_ups_input_line_failures_total", "counter",
                           "Times the input went out of tolerance, as counted by the UPS.")
INFO = MetricSpec("vigil_ups_info", "gauge", "The UPS identity; value 1.",
                  ("vendor", "model", "serial", "firmware"))

METRICS = (ON_BATTERY, BATTERY_STATUS, CHARGE, RUNTIME, TIME_ON_BATTERY, LOAD, INPUT_VOLTAGE,
           OUTPUT_VOLTAGE, INPUT_FREQUENCY, OUTPUT_FREQUENCY, TEMPERATURE, BATTERY_VOLTAGE, REPLACE,
           ALARM_COUNT, ALARM, SELFTEST_PASSED, SELFTEST_TIME, OUTPUT_SOURCE, LINE_FAILURES, INFO)

# deploy/prometheus/rules/ups.yml, for kind: ups and kind: nut alike
CONDITIONS = (
    Condition("UpsOnBattery", "critical", "last_over_time(vigil_ups_on_battery[3m]) == 1", "on battery"),
    Condition("UpsRuntimeLow", "critical", "last_over_time(vigil_ups_battery_runtime_seconds[3m]) < 10 * 60",
              "{value:duration} left"),
    Condition("UpsBatteryLow", "critical",
              'max by (job, instance, target) (last_over_time(vigil_ups_battery_status{status=~"low|depleted"}[3m])) '
              "== 1 or last_over_time(vigil_ups_battery_charge_ratio[3m]) < 0.25", "battery low"),
    Condition("UpsBatteryReplace", "warning", "vigil_ups_battery_replace_needed == 1", "battery needs replacing"),
    Condition("UpsOverload", "warning", "vigil_ups_load_ratio > 0.9", "phase {phase} loaded at {value:percent}"),
    Condition("UpsSelftestFailed", "warning", "vigil_ups_selftest_passed == 0", "last self-test failed"),
    Condition("UpsSelftestOverdue", "warning", "time() - vigil_ups_selftest_timestamp_seconds > 35 * 86400",
              "no self-test for {value:duration}"),
    Condition("UpsUnreachable", "warning", 'vigil_up{kind=~"ups|nut"} == 0', "cannot be read"),
    Condition("UpsOnBypass", "warning", 'vigil_ups_output_source{source="bypass"} == 1', "on bypass, load unprotected"),
)


@dataclass
class Reading:
    """One poll of one UPS in base units; None means unknown and leaves the series out."""

    vendor: str = ""
    model: str = ""
    serial: str = ""
    firmware: str = ""
    battery_status: str | None = None  # one of BATTERY_STATUSES
    output_source: str | None = None  # one of OUTPUT_SOURCES
    on_battery: bool | None = None
    charge: float | None = None
    runtime: float | None = None
    time_on_battery: float | None = None
    temperature: float | None = None
    battery_voltage: float | None = None
    replace: bool | None = None
    input_frequency: float | None = None
    output_frequency: float | None = None
    input_voltage: dict[str, float] = field(default_factory=dict)  # phase -> volts
    output_voltage: dict[str, float] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)  # phase -> ratio
    alarms: set[str] = field(default_factory=set)  # members of ALARMS
    alarm_count: int | None = None  # when the device counts alarms itself; else len(alarms)
    selftest_passed: bool | None = None
    selftest_time: float | None = None
    line_failures: float | None = None


def emit(out: Emitter, r: Reading) -> None:
    """Write one reading; the enums are one-hot over their whole bounded set."""
    out.gauge(INFO, 1, vendor=r.vendor, model=r.model, serial=r.serial, firmware=r.firmware)
    on_battery = r.on_battery if r.on_battery is not None else (
        r.output_source == "battery" if r.output_source else None)
    out.gauge(ON_BATTERY, _flag(on_battery))
    status = r.battery_status or "unknown"
    for name in BATTERY_STATUSES:
        out.gauge(BATTERY_STATUS, int(name == status), status=name)
    if r.output_source:
        for name in OUTPUT_SOURCES:
            out.gauge(OUTPUT_SOURCE, int(name == r.output_source), source=name)
    out.gauge(CHARGE, r.charge)
    out.gauge(RUNTIME, r.runtime)
    out.gauge(TIME_ON_BATTERY, r.time_on_battery)
    out.gauge(TEMPERATURE, r.temperature)
    out.gauge(BATTERY_VOLTAGE, r.battery_voltage)
    out.gauge(REPLACE, _flag(r.replace))
    out.gauge(INPUT_FREQUENCY, r.input_frequency)
    out.gauge(OUTPUT_FREQUENCY, r.output_frequency)
    for spec, phases in ((INPUT_VOLTAGE, r.input_voltage), (OUTPUT_VOLTAGE, r.output_voltage), (LOAD, r.load)):
        for phase, value in sorted(phases.items()):
            out.gauge(spec, value, phase=phase)
    out.gauge(ALARM_COUNT, r.alarm_count if r.alarm_count is not None else len(r.alarms))
    for name in ALARMS:
        out.gauge(ALARM, int(name in r.alarms), alarm=name)
    out.gauge(SELFTEST_PASSED, _flag(r.selftest_passed))
    out.gauge(SELFTEST_TIME, r.selftest_time)
    out.counter(LINE_FAILURES, r.line_failures)


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def number(value: object, scale: float = 1.0, negative_unknown: bool = True) -> float | None:
    """A device value as a float, whatever type it came as (Integer, Gauge32, TimeTicks, a
    numeric string); None when it is not a finite number, or negative where the MIB has no negatives."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
    except (OverflowError, TypeError, ValueError):
        return None
    if not math.isfinite(result) or (negative_unknown and result < 0):
        return None
    return result * scale


def ratio(percent: object, scale: float = 0.01) -> float | None:
    """Percent (or tenths of a percent with scale 0.001) to 0-1; out of range is unknown."""
    value = number(percent, scale)
    return value if value is not None and value <= 1.5 else None  # a load may exceed 100 %, not 150 %


def text(value: object) -> str:
    """A printable string, stripped; empty when the device left it empty or sent bytes that are not text."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:128]


def integer(value: object) -> int | None:
    """An enum or count as int (negatives kept: the caller's mapping rejects them)."""
    parsed = number(value, negative_unknown=False)
    return None if parsed is None else int(parsed)
