"""The Emitter: exact labels, one type per family, signals that fail alone."""

from __future__ import annotations

import asyncio

import pytest

from agent.collector import MAIN, Emitter, MetricError, Signal
from agent.model import MetricSpec

FREE = MetricSpec("vigil_test_free_bytes", "gauge", "Free.", ("mountpoint", "fstype"), "bytes")
READS = MetricSpec("vigil_test_reads_total", "counter", "Reads.", ("device",))
SIGNALS = {MAIN: Signal(), "licenses": Signal(every=3600), "updates": Signal()}


def emitter(strict: bool = True) -> Emitter:
    return Emitter((FREE, READS), signals=SIGNALS, strict=strict)


def test_labels_must_match_the_spec_exactly():
    out = emitter()
    out.gauge(FREE, 1, mountpoint="/", fstype="ext4")
    with pytest.raises(MetricError, match="labels"):
        out.gauge(FREE, 1, mountpoint="/boot")  # a missing label would merge two filesystems
    with pytest.raises(MetricError, match="labels"):
        out.gauge(FREE, 1, mountpoint="/", fstype="ext4", extra="x")
    with pytest.raises(MetricError, match="counter"):
        out.gauge(READS, 1, device="sda")
    assert [s.labels for s in out.samples()] == [{"mountpoint": "/", "fstype": "ext4"}]


def test_in_production_a_mismatch_is_counted_and_the_sample_dropped(caplog):
    out = emitter(strict=False)
    for _ in range(3):
        out.gauge(FREE, 1, mountpoint="/boot")
    out.counter(READS, 5, device="sda")
    assert out.rejected == 3
    assert [s.name for s in out.samples()] == ["vigil_test_reads_total"]
    assert sum("sample rejected" in r.message for r in caplog.records) == 1, "logged once"


def test_unknown_values_are_left_out_and_duplicates_refused():
    out = emitter()
    out.counter(READS, None, device="a")
    out.counter(READS, float("nan"), device="b")
    out.counter(READS, True, device="c")
    assert [(s.labels["device"], s.value) for s in out.samples()] == [("c", 1.0)]
    with pytest.raises(MetricError, match="twice"):
        out.counter(READS, 2, device="c")


def test_a_failing_signal_loses_only_its_own_samples():
    out = emitter()
    out.counter(READS, 1, device="sda")
    with out.signal("licenses"):
        out.counter(READS, 2, device="lic")
        raise PermissionError("403 Forbidden: LicenseAssignment.Read.All missing")
    with out.signal("updates"):
        out.counter(READS, 3, device="upd")
    assert [s.labels["device"] for s in out.samples(MAIN)] == ["sda"]
    assert out.samples("licenses") == ()
    assert out.errors == {"licenses": "PermissionError: 403 Forbidden: LicenseAssignment.Read.All missing"}
    assert [s.labels["device"] for s in out.samples("updates")] == ["upd"]
    assert out.ran == {MAIN, "licenses", "updates"}


def test_a_metric_bug_inside_a_signal_is_not_swallowed():
    out = emitter()
    with pytest.raises(MetricError):
        with out.signal("updates"):
            out.gauge(FREE, 1)


def test_concurrent_tasks_each_write_into_their_own_signal():
    out = emitter()

    async def part(signal: str, device: str, fail: bool):
        with out.signal(signal):
            await asyncio.sleep(0.01)
            out.counter(READS, 1, device=device)
            await asyncio.sleep(0.01)
            if fail:
                raise TimeoutError("no answer")

    async def run():
        await asyncio.gather(part("licenses", "lic", True), part("updates", "upd", False))
        out.counter(READS, 1, device="main")

    asyncio.run(run())
    assert [s.labels["device"] for s in out.samples("updates")] == ["upd"]
    assert [s.labels["device"] for s in out.samples(MAIN)] == ["main"]
    assert out.errors == {"licenses": "TimeoutError: no answer"}


def test_signals_are_declared_and_do_not_nest():
    out = emitter()
    with pytest.raises(MetricError, match="not declared"):
        with out.signal("bogus"):
            pass
    with pytest.raises(MetricError, match="nest"):
        with out.signal("updates"):
            with out.signal("licenses"):
                pass
