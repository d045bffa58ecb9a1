"""kind: vmware against a real vcsim (tests/lab/vcsim.py): values as vCenter reports them,
state changes seen by the next poll, a vCenter restart survived, login and TLS failures."""

from __future__ import annotations

import logging

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from agent.collector import Emitter
from collectors.vmware.collector import VMwareCollector
from collectors.vmware.session import VMwareError
from tests import collector_kit as kit
from tests.lab.vcsim import PASSWORD, SMALL, find, snapshot, start_vcsim


def poll(collector: VMwareCollector, due: frozenset[str] | None = None) -> Emitter:
    """One run of an opened instance, as the agent's loop makes it (the session is kept)."""
    signals = collector.signals()
    out = Emitter(collector.METRICS, collector.ctx.api, signals, strict=True)
    collector.collect(out, frozenset(signals) if due is None else due)
    return out


def value(out: Emitter, name: str, **labels: str) -> float | None:
    for sample in (s for signal in out.ran for s in out.samples(signal)):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def labelled(out: Emitter, name: str, label: str) -> set[str]:
    return {s.labels[label] for signal in out.ran for s in out.samples(signal) if s.name == name}


def test_conformance(vmware_conformance, context):
    out = kit.collect(vmware_conformance, context)
    kit.assert_conforms(out, VMwareCollector)


def test_values_are_what_vcenter_reports(vcsim, context):
    snapshot(vcsim.connect(), "DC0_C0_RP0_VM1")
    out = kit.collect(vcsim.target(), context)
    si = vcsim.connect()
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.HostSystem], True)
    hosts = {h.name: h for h in view.view}
    vms = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True).view
    datastore = find(si, vim.Datastore, "LocalDS_0")

    assert labelled(out, "vigil_vmware_host_connected", "host") == set(hosts) == {
        "DC0_H0", "DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"}
    assert labelled(out, "vigil_vmware_vm_powered_on", "vm") == {vm.name for vm in vms}
    assert value(out, "vigil_vmware_vms", state="poweredOn") == len(vms) == 4
    assert value(out, "vigil_vmware_host_connected", host="DC0_C0_H1") == 0
    assert value(out, "vigil_vmware_host_connection_state", host="DC0_C0_H1", state="disconnected") == 1
    assert value(out, "vigil_vmware_cluster_hosts", cluster="DC0_C0", state="connected") == 2
    assert value(out, "vigil_vmware_cluster_hosts", cluster="DC0_C0", state="disconnected") == 1
    assert value(out, "vigil_vmware_alarms", entity="DC0_C0_H2", severity="red") == 1
    assert value(out, "vigil_vmware_host_status", host="DC0_C0_H2", status="red") == 1

    h0 = hosts["DC0_C0_H0"].summary
    assert value(out, "vigil_vmware_host_memory_capacity_bytes", host="DC0_C0_H0") == h0.hardware.memorySize
    assert value(out, "vigil_vmware_host_cpu_capacity_hertz", host="DC0_C0_H0") == \
        h0.hardware.cpuMhz * h0.hardware.numCpuCores * 1e6
    assert value(out, "vigil_vmware_host_cpu_usage_ratio", host="DC0_C0_H0") == pytest.approx(
        h0.quickStats.overallCpuUsage / (h0.hardware.cpuMhz * h0.hardware.numCpuCores))
    assert value(out, "vigil_vmware_host_memory_usage_ratio", host="DC0_C0_H0") == pytest.approx(
        h0.quickStats.overallMemoryUsage * 2**20 / h0.hardware.memorySize)
    assert value(out, "vigil_vmware_host_uptime_seconds", host="DC0_C0_H0") == h0.quickStats.uptime
    assert value(out, "vigil_vmware_host_info", host="DC0_C0_H0", version=h0.config.product.version,
                  build=h0.config.product.build, vendor=h0.hardware.vendor, model=h0.hardware.model) == 1
    sensors = hosts["DC0_C0_H0"].runtime.healthSystemRuntime.systemHealthInfo.numericSensorInfo
    assert value(out, "vigil_vmware_host_sensors", host="DC0_C0_H0", state="green") == \
        sum(s.healthState.key == "green" for s in sensors)
    assert value(out, "vigil_vmware_datastore_capacity_bytes", datastore="LocalDS_0") == datastore.summary.capacity
    assert value(out, "vigil_vmware_datastore_free_bytes", datastore="LocalDS_0") == datastore.summary.freeSpace
    assert value(out, "vigil_vmware_datastore_accessible", datastore="LocalDS_0") == 1

    assert value(out, "vigil_vmware_vm_snapshots", vm="DC0_C0_RP0_VM1") == 1
    assert value(out, "vigil_vmware_vm_snapshots", vm="DC0_C0_RP0_VM0") == 0
    assert 0 <= value(out, "vigil_vmware_vm_snapshot_oldest_age_seconds", vm="DC0_C0_RP0_VM1") < 600
    assert value(out, "vigil_vmware_vm_snapshot_oldest_age_seconds", vm="DC0_C0_RP0_VM0") is None
    vm = find(si, vim.VirtualMachine, "DC0_C0_RP0_VM1")
    assert value(out, "vigil_vmware_vm_info", vm="DC0_C0_RP0_VM1", host=vm.runtime.host.name,
                 cluster="DC0_C0", guest_os=vm.summary.config.guestId) == 1
    assert value(out, "vigil_vmware_vm_storage_committed_bytes", vm="DC0_C0_RP0_VM1") == \
        vm.summary.storage.committed
    # perf: connected hosts only (the disconnected one has no samples), every powered-on VM
    assert labelled(out, "vigil_vmware_host_perf", "host") == {"DC0_H0", "DC0_C0_H0", "DC0_C0_H2"}
    assert labelled(out, "vigil_vmware_vm_perf", "vm") == {vm.name for vm in vms}
    assert value(out, "vigil_vmware_host_perf", host="DC0_C0_H0", counter="cpu.ready.summation") > 0


def test_the_next_poll_sees_a_vm_powered_off_and_a_host_in_maintenance(vcsim, context):
    collector = kit.build(vcsim.target(), context)
    collector.open()
    try:
        before = poll(collector)
        si = vcsim.connect()
        WaitForTask(find(si, vim.VirtualMachine, "DC0_C0_RP0_VM0").PowerOffVM_Task())
        WaitForTask(find(si, vim.HostSystem, "DC0_C0_H0").EnterMaintenanceMode_Task(timeout=0))
        after = poll(collector)
    finally:
        collector.close()
    assert value(before, "vigil_vmware_vm_powered_on", vm="DC0_C0_RP0_VM0") == 1
    assert value(after, "vigil_vmware_vm_powered_on", vm="DC0_C0_RP0_VM0") == 0
    assert value(after, "vigil_vmware_vms", state="poweredOff") == 1
    assert value(before, "vigil_vmware_host_maintenance", host="DC0_C0_H0") == 0
    assert value(after, "vigil_vmware_host_maintenance", host="DC0_C0_H0") == 1
    assert value(after, "vigil_vmware_cluster_hosts", cluster="DC0_C0", state="maintenance") == 1
    assert "DC0_C0_RP0_VM0" not in labelled(after, "vigil_vmware_vm_perf", "vm")
    # the events signal counted the power-off (the first poll only set the starting point)
    assert sum(v for k, v in kit.values(before, "vigil_vmware_events_total").items()) == 0
    powered_off = {dict(k)["user"]: v for k, v in kit.values(after, "vigil_vmware_events_total").items()
                   if dict(k)["type"] == "VmPoweredOffEvent"}
    assert sum(powered_off.values()) == 1


def test_a_vcenter_restart_costs_one_run_and_the_session_is_made_again(tmp_path, vcsim_env, context):
    with start_vcsim(tmp_path / "first", *SMALL) as sim:
        port, pki = sim.port, sim.pki
        collector = kit.build(sim.target(), context)
        collector.open()
        assert value(poll(collector), "vigil_vmware_vms", state="poweredOn") == 4
    try:
        with pytest.raises(VMwareError, match=f"vCenter 127.0.0.1:{port}"):
            poll(collector)  # vigil_up 0: the run fails with one line
        with start_vcsim(tmp_path / "second", *SMALL, port=port, pki=pki):
            out = poll(collector)  # the old session is unknown to the new vCenter: log in again
            assert value(out, "vigil_vmware_vms", state="poweredOn") == 4
            assert not out.errors
            assert collector.session.generation == 2  # a second login, on the same instance
    finally:
        collector.close()


def test_a_wrong_password_is_one_clear_line_without_the_password(vcsim, context, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_VCENTER_PASSWORD", "not-the-password")
    with pytest.raises(VMwareError) as failure:
        kit.collect(vcsim.target(), context)
    message = str(failure.value)
    assert "refused the login of monitor@vsphere.local" in message and "check user and password" in message
    assert "not-the-password" not in message and PASSWORD not in message
    assert context.api.requests() == {("vsphere", "InvalidLogin"): 1}


def test_tls_is_verified_and_ca_file_wins_over_the_environment(vcsim, context, monkeypatch, tmp_path):
    target = vcsim.target()
    del target["ca_file"]
    with pytest.raises(VMwareError, match="not trusted.*set ca_file"):
        kit.collect(target, context)
    # an environment bundle that does not hold the CA does not hide the configured ca_file
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "nothing.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "nothing.pem"))
    assert not kit.collect(vcsim.target(), context).errors


def test_filters_and_vm_metrics_off(vcsim, context):
    out = kit.collect(vcsim.target(clusters=["DC0_C*"], exclude=["*_H2", "*_VM1"], vm_metrics=False), context)
    assert labelled(out, "vigil_vmware_host_connected", "host") == {"DC0_C0_H0", "DC0_C0_H1"}
    assert labelled(out, "vigil_vmware_vm_powered_on", "vm") == set()
    assert labelled(out, "vigil_vmware_vm_perf", "vm") == set()
    # VMs on the excluded host DC0_C0_H2 are out with it; of the cluster's others, *_VM1 is excluded
    assert value(out, "vigil_vmware_vms", state="poweredOn") <= 1
    assert value(out, "vigil_vmware_alarms", entity="DC0_C0_H2", severity="red") is None
    out = kit.collect(vcsim.target(datacenters=["DC9"]), context)
    assert labelled(out, "vigil_vmware_host_connected", "host") == set()
    assert labelled(out, "vigil_vmware_datastore_capacity_bytes", "datastore") == set()


def test_a_perf_failure_keeps_the_inventory(vcsim, context):
    out = kit.collect(vcsim.target(perf_counters=["cpu.nosuch.average"]), context)
    assert "cpu.nosuch.average" in out.errors["perf"]
    assert value(out, "vigil_vmware_vms", state="poweredOn") == 4


def test_paged_reads_give_the_same_inventory_in_a_few_round_trips(vcsim, context):
    whole = kit.collect(vcsim.target(perf_counters=[], event_types=[]), context)
    trips = sum(context.api.requests().values())
    paged = kit.collect(vcsim.target(perf_counters=[], event_types=[], page_size=10), context)
    paged_trips = sum(context.api.requests().values()) - trips
    assert sorted(map(repr, whole.samples())) == sorted(map(repr, paged.samples()))
    # login, service content, view, one read; paging adds a round trip per 10 objects (25 here)
    assert trips <= 8 and paged_trips > trips


def test_perf_batches_give_the_same_samples_in_more_calls(vcsim, context):
    signals = frozenset({"main", "perf"})
    whole = kit.collect(vcsim.target(event_types=[]), context, signals)
    calls = sum(context.api.requests().values())
    batched = kit.collect(vcsim.target(event_types=[], perf_batch=2, perf_parallel=3), context, signals)
    assert sum(context.api.requests().values()) - calls > calls  # 7 entities: 4 QueryPerf calls, not 1
    assert kit.values(whole, "vigil_vmware_vm_perf").keys() == kit.values(batched, "vigil_vmware_vm_perf").keys()
    assert kit.values(whole, "vigil_vmware_host_perf").keys() == kit.values(batched, "vigil_vmware_host_perf").keys()


def test_no_vcenter_listening_is_one_clear_line(context, vcsim_env):
    from tests.lab.harness import free_port

    port = free_port()
    target = {"name": "vc", "kind": "vmware", "host": "127.0.0.1", "port": port, "user": "u",
              "password": "${env:VIGIL_TEST_VCENTER_PASSWORD}"}
    with pytest.raises(VMwareError, match=f"cannot reach vCenter 127.0.0.1:{port}: .*check host, port"):
        kit.collect(target, context)


def test_skipping_tls_verification_is_explicit_and_logged(vcsim, context, caplog):
    target = vcsim.target()
    del target["ca_file"]
    with pytest.raises(VMwareError, match="not trusted"):
        kit.collect(target, context)
    with caplog.at_level(logging.WARNING, logger="collectors.vmware.session"):
        samples = kit.collect({**target, "insecure_skip_verify": True}, context)
    assert value(samples, "vigil_vmware_vms", state="poweredOn") == 4
    assert "TLS verification is off (insecure_skip_verify)" in caplog.text
    assert f"127.0.0.1:{vcsim.port}" in caplog.text


def same(fast, slow, where: str = "") -> None:
    """fastread's value equals pyvmomi's, attribute by attribute."""
    from pyVmomi import VmomiSupport

    if isinstance(slow, VmomiSupport.ManagedObject):
        assert type(fast) is type(slow) and fast._moId == slow._moId, where
    elif isinstance(slow, VmomiSupport.DataObject):
        for prop in slow._GetPropertyList():
            same(getattr(fast, prop.name), getattr(slow, prop.name), f"{where}.{prop.name}")
    elif isinstance(slow, list):
        assert len(fast) == len(slow), where
        for i, (f, s) in enumerate(zip(fast, slow, strict=True)):
            same(f, s, f"{where}[{i}]")
    else:
        assert fast == slow, where


def test_the_fast_reader_reads_what_pyvmomi_reads(vcsim, context):
    from pyVmomi import vmodl

    from collectors.vmware import inventory

    si = vcsim.connect()
    snapshot(si, "DC0_H0_VM1")
    collector = kit.build(vcsim.target(), context)
    collector.open()
    try:
        session = collector.session
        specs = inventory.prop_specs(True) + inventory.sensor_specs()
        fast = {obj._moId: props for obj, props in session.retrieve(specs, 1000)}
        pc = vmodl.query.PropertyCollector
        traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=session.view, skip=True, selectSet=[traverse])],
                             propSet=specs)
        slow = session.content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
    finally:
        collector.close()
    assert len(fast) == len(slow.objects) > 10
    for content in slow.objects:
        props = fast[content.obj._moId]
        assert set(props) == {prop.name for prop in content.propSet}
        for prop in content.propSet:
            same(props[prop.name], prop.val, f"{content.obj._moId}.{prop.name}")


def test_a_malformed_reply_is_an_error_not_a_crash():
    import xml.etree.ElementTree as ET

    from collectors.vmware import fastread

    reply = ET.fromstring(
        '<returnval xmlns="urn:vim25" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<objects><obj type="HostSystem">host-1</obj><propSet><name>summary.quickStats.uptime</name>'
        '<val xsi:type="xsd:int">soon</val></propSet></objects></returnval>')
    with pytest.raises(fastread.MalformedReply, match="does not match its type"):
        fastread.objects(None, [reply])
    good = ET.fromstring(ET.tostring(reply).decode().replace(">soon<", ">77229<"))
    ((ref, props),), token = fastread.objects(None, [good])
    assert type(ref) is vim.HostSystem and ref._moId == "host-1" and token is None
    assert props == {"summary.quickStats.uptime": 77229}


def test_the_old_tls_verify_key_names_its_replacement(tmp_path, capsys):
    from agent.cli import main

    config = tmp_path / "vigil.yaml"
    config.write_text("targets:\n  - name: vc\n    kind: vmware\n    host: vc.example\n    user: u\n"
                      "    password: ${env:HOME}\n    tls_verify: false\n")
    assert main(["check-config", "-c", str(config)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        f"{config}:7: targets[0].tls_verify: unknown key `tls_verify`: it is now `insecure_skip_verify: true` "
        "(off by default, logged)")
