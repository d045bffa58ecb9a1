"""Device, API and tool output that is wrong: values of the wrong type, truncated JSON, NaN and
infinity, negative sizes, 2^63 and more, other encodings. Each parser gives a clear error or
leaves the sample out, never crashes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.collector import Emitter, MetricError
from checks.model import BackupSnapshot
from checks.sources import borg, restic
from checks.sources.cli import ToolError
from collectors.nut import variables as nut
from collectors.ssh import linux, windows
from collectors.ssh.collector import SshCollector
from collectors.ssh.output import OutputError
from collectors.ups import metrics as ups_metrics
from tests.bad_input import JSON_VALUES, ODD_NUMBERS, leaves
from tests.collector_kit import values

WORDS = st.one_of(ODD_NUMBERS.map(str), st.text(max_size=8), st.sampled_from(["cpu", "cpu0", "btime", "MemTotal:"]))


def _emitter() -> Emitter:
    return Emitter(SshCollector.METRICS, strict=True)


def _emit_linux(text: str) -> None:
    """A garbled reply may fail with an OutputError, or repeat a line: the agent keeps the first
    sample and counts the repeat as rejected (strict here, so it shows as "emitted twice")."""
    try:
        linux.emit_poll(_emitter(), text)
    except OutputError as exc:
        assert str(exc)
    except MetricError as exc:
        assert "emitted twice" in str(exc)


# The ssh collector: Linux sections.

SECTIONS = ["clk_tck", "stat", "loadavg", "meminfo", "mounts", "statfs", "blockdevices", "diskstats", "netdev",
            "failed_units", "reboot_required", "timedatectl", "os_release", "end"]
LINE = st.lists(WORDS, max_size=8).map(" ".join)
SECTION = st.tuples(st.sampled_from(SECTIONS), st.lists(LINE, max_size=4))


def _script_output(sections) -> str:
    return "\n".join(f"@@vigil {name}\n" + "\n".join(lines) for name, lines in sections)


@given(st.lists(SECTION, max_size=12))
def test_linux_poll_output_is_emitted_or_an_output_error(sections):
    _emit_linux(_script_output(sections))


@given(st.lists(SECTION, max_size=12))
def test_linux_inventory_output_is_emitted_or_an_output_error(sections):
    try:
        linux.emit_inventory(_emitter(), _script_output(sections))
    except OutputError as exc:
        assert str(exc)


VALID_LINUX = {
    "clk_tck": ["100"], "stat": ["cpu 10 0 5 100 1 0 0 0", "cpu0 10 0 5 100 1 0 0 0", "btime 1700000000"],
    "loadavg": ["0.10 0.20 0.30 1/100 42"],
    "meminfo": ["MemTotal: 1000 kB", "MemAvailable: 500 kB", "SwapTotal: 0 kB", "SwapFree: 0 kB"],
    "mounts": ["/dev/sda1 / ext4 rw,relatime 0 0"], "statfs": ["100 50 40 4096 1000 900 /"],
    "blockdevices": ["sda"], "diskstats": ["8 0 sda 1 0 8 1 1 0 8 1 0 10 11 0 0 0 0"],
    "netdev": ["  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0"], "failed_units": ["x.service loaded failed"],
    "time_synchronized": ["yes"], "end": [],
}


@given(st.sampled_from(sorted(VALID_LINUX)), st.integers(min_value=0, max_value=3), LINE)
def test_one_bad_line_in_a_good_linux_reply_is_emitted_or_an_output_error(section, position, line):
    sections = {name: list(lines) for name, lines in VALID_LINUX.items()}
    sections[section].insert(position, line)
    _emit_linux(_script_output(sections.items()))


def test_the_good_linux_reply_is_read():
    out = _emitter()
    linux.emit_poll(out, _script_output(VALID_LINUX.items()))
    assert values(out, "vigil_server_cpus")  # the baseline the bad lines are put into is itself valid


@pytest.mark.parametrize("clk_tck", ["0", "-100", "0.0"])
def test_a_clock_tick_of_zero_or_less_is_an_output_error(clk_tck):
    text = f"@@vigil clk_tck\n{clk_tck}\n@@vigil stat\ncpu 1 2 3 4\n@@vigil end\n"
    with pytest.raises(OutputError, match="clk_tck"):
        linux.emit_poll(_emitter(), text)


# The ssh collector: the Windows JSON document.

WINDOWS = st.fixed_dictionaries(
    {"vigil": st.just(1), "cpu": st.dictionaries(st.sampled_from(["count", "user", "system", "idle"]), JSON_VALUES),
     "memory": st.dictionaries(st.sampled_from(["total_bytes", "available_bytes", "swap_total_bytes",
                                                "swap_used_bytes", "boot_time"]), JSON_VALUES)},
    optional={"volumes": JSON_VALUES, "services": JSON_VALUES, "reboot": JSON_VALUES, "backup": JSON_VALUES,
              "os": JSON_VALUES, "hotfix": JSON_VALUES, "errors": JSON_VALUES})


@given(WINDOWS, st.integers(min_value=0, max_value=400))
def test_windows_json_is_emitted_or_an_output_error(document, cut):
    text = json.dumps(document)
    for reply in (text, text[:cut]):
        try:
            parsed = windows.parse(reply)
            windows.emit_poll(_emitter(), parsed)
            windows.emit_inventory(_emitter(), parsed)
        except OutputError as exc:
            assert str(exc)


# NUT: LIST VAR lines and the values they hold.

NUT_NAMES = st.sampled_from(["ups.status", "ups.alarm", "battery.charge", "battery.runtime", "battery.temperature",
                             "battery.voltage", "input.frequency", "input.voltage", "input.L1-N.voltage",
                             "output.L2.power.percent", "ups.load", "ups.test.result", "ups.test.date", "ups.mfr"])
NUT_VALUES = st.one_of(ODD_NUMBERS.map(str), st.text(max_size=30),
                       st.sampled_from(["OL OB LB RB ALARM", "Done and error", "2026-02-30", "13/45/2026"]))


@given(st.text(max_size=80))
def test_a_nut_line_splits_into_words(line):
    assert all(isinstance(word, str) for word in nut.split(line))


@given(st.dictionaries(NUT_NAMES, NUT_VALUES))
def test_nut_variables_normalise_or_leave_the_sample_out(variables):
    reading = nut.parse(variables)
    for value in (reading.charge, reading.runtime, reading.temperature, reading.battery_voltage,
                  *reading.input_voltage.values(), *reading.load.values()):
        assert value is None or math.isfinite(value)
    ups_metrics.emit(Emitter(_ups_metrics(), strict=True), reading)


def _ups_metrics():
    from collectors.nut.collector import NutCollector
    return NutCollector.METRICS


@given(st.one_of(JSON_VALUES, st.binary(max_size=10), st.just(2**1100), st.just("9" * 400)))
def test_ups_values_are_numbers_in_range_or_none(value):
    for parsed in (ups_metrics.number(value), ups_metrics.ratio(value), ups_metrics.integer(value)):
        assert parsed is None or math.isfinite(parsed)
    assert isinstance(ups_metrics.text(value), str)


# restic and borg JSON.

SNAPSHOT = st.fixed_dictionaries({}, optional={
    "id": JSON_VALUES | st.just("abcdef0123456789"), "time": JSON_VALUES | st.just("2026-11-21T01:00:00+00:00"),
    "paths": JSON_VALUES, "hostname": JSON_VALUES, "short_id": JSON_VALUES,
    "summary": st.fixed_dictionaries({}, optional={
        "backup_start": st.just("2026-11-21T01:00:00+00:00") | JSON_VALUES,
        "backup_end": st.just("2026-11-21T01:05:00+00:00") | JSON_VALUES,
        "total_bytes_processed": ODD_NUMBERS, "total_files_processed": ODD_NUMBERS})})


@given(SNAPSHOT)
def test_a_restic_snapshot_is_read_or_a_tool_error(entry):
    try:
        snapshot = restic._snapshot(json.loads(json.dumps(entry)))
    except ToolError as exc:
        assert str(exc)
    else:
        assert snapshot.size_bytes is None or 0 <= snapshot.size_bytes <= 2**63 - 1
        assert math.isfinite(snapshot.completed_at)


@given(st.text(max_size=40) | SNAPSHOT.map(json.dumps), st.integers(min_value=0, max_value=60))
def test_restic_output_that_is_not_json_is_a_tool_error(text, cut):
    try:
        restic._json(text[:cut], "restic snapshots")
    except ToolError as exc:
        assert "not JSON" in str(exc)


@given(st.one_of(JSON_VALUES, st.just("2026-11-21T01:00:00.123456")))
def test_a_borg_time_is_seconds_or_a_value_error(stamp):
    try:
        assert math.isfinite(borg._utc(stamp))
    except (TypeError, ValueError):
        pass  # the callers turn both into a ToolError


BAD_COUNTS = [-1, 2**63, 2**64, 1.5, "12", None, True, [1]]
GOOD_SUMMARY = {"backup_start": "2026-11-21T01:00:00+00:00", "backup_end": "2026-11-21T01:05:00+00:00",
                "total_bytes_processed": 4096, "total_files_processed": 3}


@pytest.mark.parametrize("bad", [*BAD_COUNTS, float("inf"), float("nan")])
def test_a_restic_total_out_of_range_is_a_tool_error(bad):
    entry = {"id": "abcdef0123456789", "time": "2026-11-21T01:00:00+00:00",
             "summary": {**GOOD_SUMMARY, "total_bytes_processed": bad}}
    with pytest.raises(ToolError, match="unexpected JSON"):
        restic._snapshot(entry)


def test_a_restic_summary_in_range_is_read():
    snapshot = restic._snapshot({"id": "abcdef0123456789", "time": "2026-11-21T01:00:00+00:00",
                                 "summary": GOOD_SUMMARY})
    assert (snapshot.size_bytes, snapshot.file_count, snapshot.duration) == (4096, 3, 300.0)


BORG_INFO = st.fixed_dictionaries({}, optional={"archives": st.lists(st.fixed_dictionaries({}, optional={
    "end": st.just("2026-11-21T01:05:00.000000") | JSON_VALUES, "duration": ODD_NUMBERS,
    "stats": st.fixed_dictionaries({}, optional={"original_size": ODD_NUMBERS, "nfiles": ODD_NUMBERS})}),
    max_size=2)}) | JSON_VALUES


@given(BORG_INFO)
def test_borg_info_is_measured_or_a_tool_error(info):
    before = BackupSnapshot(id="a" * 64, name="host-1", completed_at=0.0)
    try:
        after = borg._measured(before, json.loads(json.dumps(info)))
    except ToolError as exc:
        assert "unexpected JSON" in str(exc)
    else:
        assert 0 <= after.size_bytes <= 2**63 - 1 and 0 <= after.file_count <= 2**63 - 1
        assert math.isfinite(after.duration) and after.duration >= 0


@pytest.mark.parametrize("field, bad", [("original_size", -1), ("original_size", 2**63), ("nfiles", 1e300),
                                        ("duration", float("nan")), ("duration", -3.0)])
def test_a_borg_figure_out_of_range_is_a_tool_error(field, bad):
    archive = {"end": "2026-11-21T01:05:00.000000", "duration": 1.0, "stats": {"original_size": 10, "nfiles": 1}}
    if field == "duration":
        archive["duration"] = bad
    else:
        archive["stats"][field] = bad
    with pytest.raises(ToolError, match="unexpected JSON"):
        borg._measured(BackupSnapshot(id="a" * 64, name="host-1", completed_at=0.0), {"archives": [archive]})


def test_a_btime_line_without_a_value_is_an_output_error():
    with pytest.raises(OutputError, match="btime"):
        linux.emit_poll(_emitter(), _script_output({**VALID_LINUX, "stat": ["btime"]}.items()))


WINDOWS_REPLIES = sorted((Path(__file__).parent / "kinds" / "ssh" / "data").glob("windows-*.json"))
assert WINDOWS_REPLIES, "the real Windows replies are missing"


@given(st.sampled_from(WINDOWS_REPLIES), st.data(), JSON_VALUES, st.floats(min_value=0, max_value=1))
def test_a_real_windows_reply_with_one_value_wrong_or_cut_short(path, data, bad, cut):
    document = json.loads(path.read_text(encoding="utf-8"))
    where = data.draw(st.sampled_from(list(leaves(document))))
    node = document
    for key in where[:-1]:
        node = node[key]
    if where:
        node[where[-1]] = bad
    text = json.dumps(document)
    for reply in (text, text[:int(len(text) * cut)], text.encode().decode("latin-1")):
        try:
            parsed = windows.parse(reply)
            windows.emit_poll(_emitter(), parsed)
            windows.emit_inventory(_emitter(), parsed)
        except OutputError as exc:
            assert str(exc)
        except MetricError as exc:
            assert "emitted twice" in str(exc)  # a repeated volume or service: the first is kept
