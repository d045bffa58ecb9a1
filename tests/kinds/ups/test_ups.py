"""`kind: ups` against a real snmpsim: RFC 1628 and APC recordings, v2c and v3, the field's quirks."""

from __future__ import annotations

import asyncio

import pytest

from agent import registry
from agent.collector import Emitter
from agent.config import AgentConfig
from collectors.ups.collector import UpsCollector
from tests import collector_kit as kit


def value(out, name: str, **labels) -> float | None:
    return kit.values(out, name).get(tuple(sorted(labels.items())))


def pdus(context) -> int:
    return sum(count for (api, _), count in context.api.requests().items() if api == "snmp")


def test_conformance_three_phase_unit_emits_every_family(ups_conformance, context):
    out = kit.collect(ups_conformance, context)
    kit.assert_conforms(out, UpsCollector)
    assert value(out, "vigil_ups_input_voltage_volts", phase="3") == 232
    assert value(out, "vigil_ups_output_voltage_volts", phase="2") == 230
    assert value(out, "vigil_ups_load_ratio", phase="3") == pytest.approx(0.45)
    assert value(out, "vigil_ups_input_frequency_hertz") == pytest.approx(50.0)
    assert value(out, "vigil_ups_output_frequency_hertz") == pytest.approx(49.9)
    assert value(out, "vigil_ups_battery_voltage_volts") == pytest.approx(432.0)
    assert value(out, "vigil_ups_battery_runtime_seconds") == 25 * 60
    assert value(out, "vigil_ups_battery_charge_ratio") == pytest.approx(0.97)
    assert value(out, "vigil_ups_input_line_failures_total") == 7
    assert value(out, "vigil_ups_alarms") == 2
    assert value(out, "vigil_ups_alarm_active", alarm="fan_failure") == 1
    assert value(out, "vigil_ups_alarm_active", alarm="other") == 1  # a vendor's own alarm OID
    assert value(out, "vigil_ups_alarm_active", alarm="on_battery") == 0
    assert value(out, "vigil_ups_output_source", source="normal") == 1
    assert value(out, "vigil_ups_selftest_passed") == 1
    # the test began 1800 s of sysUpTime before now (500000 - 320000 hundredths)
    assert value(out, "vigil_ups_selftest_timestamp_seconds") == pytest.approx(context.clock.time() - 1800, abs=5)
    assert pdus(context) == 3  # sysObjectID once per session, then one GET and one GETBULK per poll


def test_rfc1628_single_phase_over_v2c(snmp_lab, context):
    out = kit.collect(snmp_lab.v2c("ups-mib"), context)
    assert value(out, "vigil_ups_info", vendor="ACME Power", model="ACME-3000RM", serial="", firmware="FW 1.2.3") == 1
    assert value(out, "vigil_ups_on_battery") == 0
    assert value(out, "vigil_ups_battery_status", status="normal") == 1
    assert value(out, "vigil_ups_battery_status", status="low") == 0
    assert value(out, "vigil_ups_battery_runtime_seconds") == 42 * 60
    assert value(out, "vigil_ups_battery_charge_ratio") == 1.0
    assert value(out, "vigil_ups_battery_voltage_volts") == pytest.approx(54.5)
    assert value(out, "vigil_ups_battery_temperature_celsius") == 27
    assert value(out, "vigil_ups_input_voltage_volts", phase="1") == 230
    assert value(out, "vigil_ups_load_ratio", phase="1") == pytest.approx(0.23)
    assert value(out, "vigil_ups_alarm_active", alarm="test_in_progress") == 1
    assert value(out, "vigil_ups_battery_replace_needed") == 0
    assert value(out, "vigil_ups_selftest_timestamp_seconds") is None  # no upsTestStartTime: left out


def test_apc_detected_from_sys_object_id_in_one_pdu_per_poll(snmp_lab, context):
    collector = kit.build(snmp_lab.v2c("apc"), context)

    async def two_polls():
        await collector.open()
        first = await _poll(collector)
        before = pdus(context)
        second = await _poll(collector)
        await collector.close()
        return first, second, pdus(context) - before

    first, second, per_poll = asyncio.run(two_polls())
    assert collector.mib == "apc" and per_poll == 1
    out = second
    assert value(out, "vigil_ups_info", vendor="APC", model="Smart-UPS 3000 RM", serial="AS1234567890",
                 firmware="UPS 09.3 (ID18)") == 1
    assert value(out, "vigil_ups_battery_charge_ratio") == 1.0  # high precision 1000 tenths
    assert value(out, "vigil_ups_battery_temperature_celsius") == pytest.approx(29.0)
    assert value(out, "vigil_ups_battery_runtime_seconds") == 2520  # TimeTicks 252000
    assert value(out, "vigil_ups_battery_voltage_volts") == 54
    assert value(out, "vigil_ups_input_voltage_volts", phase="1") == 231
    assert value(out, "vigil_ups_load_ratio", phase="1") == pytest.approx(0.23)
    assert value(out, "vigil_ups_output_source", source="normal") == 1
    assert value(out, "vigil_ups_selftest_passed") == 1
    assert value(out, "vigil_ups_selftest_timestamp_seconds") == 1747008000  # 05/12/2025, midnight UTC
    assert value(out, "vigil_ups_battery_replace_needed") == 0
    assert value(out, "vigil_ups_alarms") == 0


async def _poll(collector):
    out = Emitter(collector.METRICS, collector.ctx.api, collector.signals(), strict=True)
    await collector.collect(out, frozenset({"main"}))
    return out


@pytest.mark.parametrize("user", ["vigil", "vigil256"])
def test_v3_auth_priv(snmp_lab, context, user):
    out = kit.collect(snmp_lab.v3(f"v3-{user}", "apc", user=user), context)
    assert value(out, "vigil_ups_battery_charge_ratio") == 1.0


def on_battery_eventually(target: dict, context, timeout: float = 60):
    """Poll until the unit reports on battery: snmpsim re-indexes a rewritten file on the next
    request, and on a loaded machine that request may time out once."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            out = kit.collect(target, context)
            if value(out, "vigil_ups_on_battery") == 1:
                return out
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            pytest.fail("the rewritten recording never showed on battery")
        time.sleep(0.5)


def test_flip_to_battery_shows_on_the_next_poll(snmp_lab, context):
    target = snmp_lab.v2c("flip-apc", mib="apc")
    assert value(kit.collect(target, context), "vigil_ups_on_battery") == 0
    snmp_lab.rewrite("flip-apc", {"1.3.6.1.4.1.318.1.1.1.4.1.1.0": "2|3", "1.3.6.1.4.1.318.1.1.1.2.1.1.0": "2|3",
                                  "1.3.6.1.4.1.318.1.1.1.2.2.3.0": "67|18000",
                                  "1.3.6.1.4.1.318.1.1.1.2.1.2.0": "67|9000"})
    out = on_battery_eventually(target, context)
    assert value(out, "vigil_ups_output_source", source="battery") == 1
    assert value(out, "vigil_ups_battery_status", status="low") == 1
    assert value(out, "vigil_ups_battery_runtime_seconds") == 180
    assert value(out, "vigil_ups_time_on_battery_seconds") == 90
    assert value(out, "vigil_ups_alarm_active", alarm="low_battery") == 1
    assert value(out, "vigil_ups_alarms") == 2  # on battery, low battery


def test_flip_rfc1628_unit_to_battery(snmp_lab, context):
    target = snmp_lab.v2c("flip-rfc")
    snmp_lab.rewrite("flip-rfc", {"1.3.6.1.2.1.33.1.4.1.0": "2|5", "1.3.6.1.2.1.33.1.2.2.0": "2|75",
                                  "1.3.6.1.2.1.33.1.2.3.0": "2|4"})
    out = on_battery_eventually(target, context)
    assert value(out, "vigil_ups_time_on_battery_seconds") == 75
    assert value(out, "vigil_ups_battery_runtime_seconds") == 240


def test_quirks_unknowns_left_out_types_parsed_by_value(snmp_lab, context):
    out = kit.collect(snmp_lab.v2c("quirks"), context)
    for name in ("vigil_ups_battery_charge_ratio", "vigil_ups_battery_runtime_seconds",
                 "vigil_ups_battery_temperature_celsius", "vigil_ups_output_frequency_hertz",
                 "vigil_ups_selftest_passed", "vigil_ups_selftest_timestamp_seconds",
                 "vigil_ups_input_line_failures_total"):
        assert kit.values(out, name) == {}, name  # -1, "abc", noTestsInitiated, 0, noSuchInstance
    assert kit.values(out, "vigil_ups_output_voltage_volts") == {}  # -1 in a row with an extra .0
    assert value(out, "vigil_ups_info", vendor="", model="Model X", serial="", firmware="") == 1
    assert value(out, "vigil_ups_battery_status", status="low") == 1  # Gauge32 where INTEGER
    assert value(out, "vigil_ups_time_on_battery_seconds") == 120  # TimeTicks where INTEGER
    assert value(out, "vigil_ups_battery_voltage_volts") == pytest.approx(48.0)  # a numeric string
    assert value(out, "vigil_ups_input_frequency_hertz") == pytest.approx(50.0)  # row "1.0"
    assert value(out, "vigil_ups_input_voltage_volts", phase="1") == 0  # mains gone is a real 0
    assert value(out, "vigil_ups_load_ratio", phase="1") == pytest.approx(0.55)
    assert value(out, "vigil_ups_on_battery") == 1


@pytest.mark.parametrize("mib", ["auto", "apc"])
def test_device_without_ups_objects_is_down_with_that_reason(snmp_lab, context, mib):
    with pytest.raises(Exception, match="no UPS objects"):
        kit.collect(snmp_lab.v2c("pdu", mib=mib), context)


def test_wrong_community_is_a_timeout_with_a_clear_reason(snmp_lab, context):
    target = snmp_lab.v2c("wrong", community="no-such-community", snmp_timeout="0.3s", retries=0)
    with pytest.raises(Exception, match="no SNMP answer within 0.3s: .*community is wrong"):
        kit.collect(target, context)
    assert context.api.requests() == {("snmp", "timeout"): 1}


def test_wrong_v3_key_says_wrong_digest(snmp_lab, context):
    target = snmp_lab.v3("badkey", "apc", auth_key="not-the-key", snmp_timeout="1s", retries=0)
    with pytest.raises(Exception, match="wrong digest.*auth_key"):
        kit.collect(target, context)
    assert ("snmp", "wrong_digest") in context.api.requests()


def test_config_requires_secret_references_and_known_protocols():
    base = {"name": "u", "kind": "ups", "host": "10.0.0.20"}
    with pytest.raises(Exception, match="secret reference"):
        AgentConfig.model_validate({"targets": [{**base, "snmp": {"version": "2c", "community": "public"}}]})
    with pytest.raises(Exception, match="auth_protocol"):
        AgentConfig.model_validate({"targets": [{**base, "snmp": {
            "version": 3, "user": "u", "auth_protocol": "md5", "auth_key": "${env:HOME}",
            "priv_key": "${env:HOME}"}}]})
    assert registry.COLLECTORS["ups"] == "collectors.ups.collector:UpsCollector"


def test_the_example_config_ups_units_are_valid_once_enabled(tmp_path, monkeypatch):
    """The commented UPS units of deploy/vigil.example.yaml, enabled as their comment says."""
    import re

    import yaml

    from tests.conftest import ROOT

    lines = (ROOT / "deploy" / "vigil.example.yaml").read_text().splitlines()
    start = lines.index("  # - name: ups-serverroom")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append(line.replace("  # ", "  ", 1))
    text = "\n".join(block)
    for name in set(re.findall(r"\$\{cred:(\w+)\}", text)):
        (tmp_path / name).write_text("dummy-secret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    targets = AgentConfig.model_validate({"targets": yaml.safe_load(text)}).targets
    assert [(t.kind, t.name) for t in targets] == [("ups", "ups-serverroom"), ("nut", "ups-rack1")]


def test_apc_three_phase_unit_in_the_same_single_get(snmp_lab, context):
    out = kit.collect(snmp_lab.v2c("apc-3phase", mib="apc"), context)
    assert kit.values(out, "vigil_ups_input_voltage_volts") == {
        (("phase", "1"),): 400, (("phase", "2"),): 398, (("phase", "3"),): 402}
    assert value(out, "vigil_ups_output_voltage_volts", phase="3") == 229
    assert value(out, "vigil_ups_load_ratio", phase="3") == pytest.approx(1.04)
    assert value(out, "vigil_ups_alarm_active", alarm="overload") == 1
    assert pdus(context) == 1


def test_two_cards_with_one_v3_user_name_and_different_keys_both_work(snmp_lab, context, monkeypatch):
    """pysnmp keys USM users by name: the second key set of `vigil` gets an engine of its own."""
    import shutil
    import tempfile
    from pathlib import Path

    from agent.collector import run_once
    from tests.lab.snmpsim import DATA, snmpsim

    other_keys = {"vigil": ("SHA", "another-auth-key", "AES", "another-priv-key")}
    directory = Path(tempfile.mkdtemp(prefix="vigil-snmpsim-b-"))
    try:
        with snmpsim(directory, DATA, other_keys) as second:
            first_target = snmp_lab.v3("card-a", "apc")
            second_target = second.v3("card-b", "apc")
            monkeypatch.setenv("VIGIL_TEST_AUTH_CARD_B", "another-auth-key")
            monkeypatch.setenv("VIGIL_TEST_PRIV_CARD_B", "another-priv-key")
            collectors = [kit.build(t, context) for t in (first_target, second_target) * 2]

            async def together():
                return await asyncio.gather(*(run_once(c, strict=True) for c in collectors))

            for _ in range(2):
                outs = asyncio.run(together())
                assert [value(out, "vigil_ups_battery_charge_ratio") for out in outs] == [1.0] * 4
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_silent_device_says_so_inside_a_short_job_timeout(snmp_lab, context):
    """3 s per try, 3 tries, would outlive a 3 s job: each try is cut so the reason is the device's."""
    from dataclasses import replace

    target = snmp_lab.v2c("silent", community="no-such-community")
    with pytest.raises(Exception, match=r"no SNMP answer within 0.45s \(3 tries\)"):
        kit.collect(target, replace(context, timeout=3.0))
