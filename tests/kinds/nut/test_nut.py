"""`kind: nut` against a real upsd with dummy-ups drivers: states, three phases, errors, a flip mid-test."""

from __future__ import annotations

import asyncio

import pytest

from agent.collector import Emitter
from collectors.nut.collector import NutCollector
from collectors.nut.variables import alarm_names, split
from tests import collector_kit as kit
from tests.lab.harness import wait_until
from tests.lab.nut import ON_MAINS


def value(out, name: str, **labels) -> float | None:
    return kit.values(out, name).get(tuple(sorted(labels.items())))


def test_conformance_unit_with_alarms_emits_every_family(nut_conformance, context):
    out = kit.collect(nut_conformance, context)
    kit.assert_conforms(out, NutCollector)
    assert value(out, "vigil_ups_info", vendor="Eaton", model="5PX 1500", serial="G123A45678",
                 firmware="02.14.0026") == 1
    assert value(out, "vigil_ups_alarm_active", alarm="temperature_bad") == 1
    assert value(out, "vigil_ups_alarm_active", alarm="fan_failure") == 1
    assert value(out, "vigil_ups_alarm_active", alarm="other") == 1  # "Gremlins!"
    assert value(out, "vigil_ups_alarms") == 3
    assert value(out, "vigil_ups_selftest_timestamp_seconds") == 1762128000  # 2025-11-03 UTC
    assert context.api.requests() == {("nut", "ok"): 1}


def test_on_mains(nut_lab, context):
    out = kit.collect(nut_lab.target("online"), context)
    assert value(out, "vigil_ups_on_battery") == 0
    assert value(out, "vigil_ups_battery_status", status="normal") == 1
    assert value(out, "vigil_ups_output_source", source="normal") == 1
    assert value(out, "vigil_ups_battery_charge_ratio") == 1.0
    assert value(out, "vigil_ups_battery_runtime_seconds") == 2460
    assert value(out, "vigil_ups_battery_temperature_celsius") == 26.5
    assert value(out, "vigil_ups_battery_voltage_volts") == pytest.approx(27.1)
    assert value(out, "vigil_ups_input_voltage_volts", phase="1") == pytest.approx(231.4)
    assert value(out, "vigil_ups_load_ratio", phase="1") == pytest.approx(0.23)
    assert value(out, "vigil_ups_selftest_passed") == 1
    assert value(out, "vigil_ups_time_on_battery_seconds") == 0
    assert value(out, "vigil_ups_alarms") == 0


@pytest.mark.parametrize(("ups", "expected"), [
    ("onbatt", {"vigil_ups_on_battery": 1, "vigil_ups_battery_charge_ratio": 0.64,
                "vigil_ups_battery_runtime_seconds": 840}),
    ("lowbatt", {"vigil_ups_on_battery": 1, "vigil_ups_battery_runtime_seconds": 95}),
    ("replace", {"vigil_ups_battery_replace_needed": 1, "vigil_ups_selftest_passed": 0, "vigil_ups_alarms": 2}),
    ("bypass", {"vigil_ups_on_battery": 0, "vigil_ups_alarms": 2}),
])
def test_states(nut_lab, context, ups, expected):
    out = kit.collect(nut_lab.target(ups), context)
    for name, number in expected.items():
        assert value(out, name) == pytest.approx(number), name
    if ups == "lowbatt":
        assert value(out, "vigil_ups_battery_status", status="low") == 1
        assert value(out, "vigil_ups_alarm_active", alarm="low_battery") == 1
    if ups == "bypass":
        assert value(out, "vigil_ups_output_source", source="bypass") == 1
        assert value(out, "vigil_ups_alarm_active", alarm="overload") == 1
        assert value(out, "vigil_ups_load_ratio", phase="1") == pytest.approx(1.12)
    if ups == "replace":
        assert value(out, "vigil_ups_alarm_active", alarm="selftest_failed") == 1


def test_three_phases(nut_lab, context):
    out = kit.collect(nut_lab.target("threephase"), context)
    assert kit.values(out, "vigil_ups_input_voltage_volts") == {
        (("phase", "1"),): 230.1, (("phase", "2"),): 229.4, (("phase", "3"),): 231.0}
    assert value(out, "vigil_ups_output_voltage_volts", phase="2") == pytest.approx(230.2)
    assert value(out, "vigil_ups_load_ratio", phase="3") == pytest.approx(0.35)


def test_status_flip_mid_session_on_one_connection(nut_lab, context):
    collector = kit.build(nut_lab.target("flip"), context)

    async def poll() -> Emitter:
        out = Emitter(collector.METRICS, collector.ctx.api, collector.signals(), strict=True)
        await collector.collect(out, frozenset({"main"}))
        return out

    async def scenario():
        await collector.open()
        try:
            assert value(await poll(), "vigil_ups_on_battery") == 0
            nut_lab.set_state("flip", {**ON_MAINS, "ups.status": "OB DISCHRG", "battery.runtime": "600"})
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                out = await poll()
                if value(out, "vigil_ups_on_battery") == 1 or asyncio.get_running_loop().time() > deadline:
                    return out
                await asyncio.sleep(0.5)
        finally:
            await collector.close()
            nut_lab.set_state("flip", ON_MAINS)

    out = asyncio.run(scenario())
    assert value(out, "vigil_ups_on_battery") == 1
    assert value(out, "vigil_ups_battery_runtime_seconds") == 600
    assert value(out, "vigil_ups_output_source", source="battery") == 1
    assert value(out, "vigil_ups_time_on_battery_seconds") == 0  # the first poll that saw OB
    assert context.api.requests()[("nut", "ok")] >= 2


def test_unknown_ups_is_a_clear_reason(nut_lab, context):
    with pytest.raises(Exception, match=r"no UPS named `nosuch` \(ERR UNKNOWN-UPS\)"):
        kit.collect(nut_lab.target("nosuch"), context)
    assert context.api.requests() == {("nut", "unknown_ups"): 1}


def test_tls_required_but_not_offered(nut_lab, context):
    with pytest.raises(Exception, match="does not offer STARTTLS"):
        kit.collect(nut_lab.target("online", tls="required"), context)


def test_stale_data_and_a_dead_driver_are_clear_reasons(context):
    import shutil
    import signal
    import tempfile
    from pathlib import Path

    from tests.lab.nut import nut

    directory = Path(tempfile.mkdtemp(prefix="vigil-nut-stale-"))
    try:
        with nut(directory, {"frozen": ON_MAINS, "gone": ON_MAINS}, maxage=5) as lab:
            lab.drivers["frozen"].signal(signal.SIGSTOP)  # alive but silent: upsd's data ages out
            try:
                wait_until(lambda: _fails(lab.target("frozen"), context), 30, "upsd to call the data stale")
                with pytest.raises(Exception, match=r"no fresh data for `frozen` \(ERR DATA-STALE\)"):
                    kit.collect(lab.target("frozen"), context)
            finally:
                lab.drivers["frozen"].signal(signal.SIGCONT)
            (lab.conf / "gone.dev").unlink()  # dummy-ups exits without its file
            wait_until(lambda: _fails(lab.target("gone"), context), 30, "the driver to exit")
            with pytest.raises(Exception, match=r"driver for `gone` is not running \(ERR DRIVER-NOT-CONNECTED\)"):
                kit.collect(lab.target("gone"), context)
        assert ("nut", "data_stale") in context.api.requests()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _fails(target, context) -> bool:
    try:
        kit.collect(target, context)
    except Exception:
        return True
    return False


def test_protocol_words_and_alarm_text():
    assert split('VAR rack1 ups.alarm "Replace battery! \\"Now\\""') == [
        "VAR", "rack1", "ups.alarm", 'Replace battery! "Now"']
    assert split('VAR r x ""') == ["VAR", "r", "x", ""]
    assert alarm_names("Replace battery! Overload!") == {"battery_bad", "overload"}
    assert alarm_names("") == set()


@pytest.fixture(scope="module")
def tls_nut():
    """An upsd that offers STARTTLS with a certificate from a throwaway CA (in a folder of its own)."""
    import shutil
    import tempfile
    from pathlib import Path

    from tests.lab.nut import STATES, nut
    from tests.lab.pki import make_pki

    directory = Path(tempfile.mkdtemp(prefix="vigil-tls-nut-"))
    try:
        pki = make_pki(directory / "pki")
        with nut(directory / "nut", {"online": STATES["online"]}, pki) as lab:
            yield lab, pki
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_starttls_when_offered_verified_with_the_targets_ca_over_the_environments(tls_nut, context, monkeypatch,
                                                                                    tmp_path):
    lab, pki = tls_nut
    from tests.lab.pki import make_pki

    other = make_pki(tmp_path / "other")  # the environment names another CA: ca_file must win
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other.ca))
    collector = kit.build(lab.target("online", ca_file=str(pki.ca)), context)

    async def poll():
        await collector.open()
        try:
            out = Emitter(collector.METRICS, collector.ctx.api, collector.signals(), strict=True)
            await collector.collect(out, frozenset({"main"}))
            return out, collector.session.encrypted
        finally:
            await collector.close()

    out, encrypted = asyncio.run(poll())
    assert encrypted
    assert value(out, "vigil_ups_on_battery") == 0


def test_starttls_with_an_unknown_ca_fails_clearly(tls_nut, context, monkeypatch, tmp_path):
    lab, _ = tls_nut
    from tests.lab.pki import make_pki

    monkeypatch.setenv("SSL_CERT_FILE", str(make_pki(tmp_path / "other").ca))
    with pytest.raises(Exception, match=r"TLS failed: its TLS certificate is not trusted \(.+\); set ca_file: to"):
        kit.collect(lab.target("online"), context)


@pytest.mark.parametrize(("status", "source", "alarms"), [
    ("OL CHRG HB", "normal", set()),
    ("OB DISCHRG", "battery", {"on_battery"}),
    ("OB LB FSD", "battery", {"on_battery", "low_battery", "shutdown_imminent"}),
    ("OL RB", "normal", {"battery_bad"}),
    ("OL BYPASS OVER", "bypass", {"on_bypass", "overload"}),
    ("OL CAL", "normal", {"test_in_progress"}),
    ("OFF", "off", {"output_off"}),
    ("OL TRIM", "reducer", set()),
    ("OL BOOST", "boost", set()),
    ("OL ALARM", "normal", {"other"}),  # ALARM without ups.alarm text
    ("WAIT", "unknown", set()),  # a flag NUT may add later: the source is unknown, nothing crashes
])
def test_every_status_flag_maps(status, source, alarms):
    from collectors.nut.variables import parse

    reading = parse({"ups.status": status})
    assert reading.output_source == source
    assert reading.alarms == alarms
    assert reading.on_battery == ("OB" in status.split())
    assert reading.replace == ("RB" in status.split())
    assert reading.battery_status == ("low" if "LB" in status.split() else
                                      "normal" if {"OL", "OB"} & set(status.split()) else None)


def test_malformed_values_are_left_out():
    from collectors.nut.variables import parse

    reading = parse({"ups.status": "OL", "battery.charge": "n/a", "battery.runtime": "-1", "ups.load": "",
                     "input.voltage": "230,5", "ups.test.result": "No test initiated", "ups.test.date": "garbage"})
    assert (reading.charge, reading.runtime, reading.load, reading.input_voltage) == (None, None, {}, {})
    assert reading.selftest_passed is None and reading.selftest_time is None


def test_targets_of_one_upsd_share_one_connection_and_never_mix_replies(nut_lab, context):
    names = ["online", "onbatt", "threephase", "bypass"]
    collectors = [kit.build(nut_lab.target(ups), context) for ups in names]

    async def scenario():
        for collector in collectors:
            await collector.open()
        sessions = {id(collector.session) for collector in collectors}
        outs = []
        try:
            for _ in range(3):  # concurrent polls, as the scheduler runs them
                outs = []
                for collector in collectors:
                    outs.append(Emitter(collector.METRICS, collector.ctx.api, collector.signals(), strict=True))
                pairs = zip(collectors, outs, strict=True)
                await asyncio.gather(*(c.collect(o, frozenset({"main"})) for c, o in pairs))
        finally:
            for collector in collectors:
                await collector.close()
        return sessions, outs

    sessions, outs = asyncio.run(scenario())
    assert len(sessions) == 1
    by_name = dict(zip(names, outs, strict=True))
    assert value(by_name["online"], "vigil_ups_on_battery") == 0
    assert value(by_name["onbatt"], "vigil_ups_on_battery") == 1
    assert value(by_name["threephase"], "vigil_ups_input_voltage_volts", phase="2") == pytest.approx(229.4)
    assert value(by_name["bypass"], "vigil_ups_output_source", source="bypass") == 1
    assert context.api.requests() == {("nut", "ok"): 12}


def test_a_hung_upsd_breaks_the_session_and_the_next_open_makes_a_new_one(context):
    import shutil
    import signal
    import tempfile
    from pathlib import Path

    from tests.lab.nut import nut

    directory = Path(tempfile.mkdtemp(prefix="vigil-nut-hung-"))
    try:
        with nut(directory, {"rack1": ON_MAINS}) as lab:
            target = lab.target("rack1", nut_timeout="1s")
            collector = kit.build(target, context)

            async def poll():
                out = Emitter(collector.METRICS, collector.ctx.api, collector.signals(), strict=True)
                await collector.collect(out, frozenset({"main"}))
                return out

            async def scenario():
                await collector.open()
                first = collector.session
                await poll()
                lab.upsd.signal(signal.SIGSTOP)
                try:
                    with pytest.raises(Exception, match="no reply within 1s"):
                        await poll()
                finally:
                    lab.upsd.signal(signal.SIGCONT)
                assert first.broken
                await collector.close()  # what the agent does after a failed run
                await collector.open()
                try:
                    out = await poll()
                    return first, collector.session, collector.session.broken, out
                finally:
                    await collector.close()

            first, second, broken, out = asyncio.run(scenario())
            assert second is not first and not broken
            assert value(out, "vigil_ups_on_battery") == 0
            assert ("nut", "error") in context.api.requests()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
