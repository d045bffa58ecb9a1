"""API replies that are wrong: Meraki, Microsoft Graph and its token endpoint, Veeam B&R, vSphere
property values and QueryPerf results, S3 and Azure Blob listings.

Each property starts from a real-shaped reply (tests/fixtures/) with one thing wrong (a value
of the wrong type, NaN or infinity, negative, 2^63 and more, a key missing or added, a list
emptied) or its bytes cut short, re-encoded or huge. The parser gives samples the real
Emitter accepts under VIGIL_STRICT_METRICS, or the module's own one-line error: never a
TypeError, KeyError, ValueError or OverflowError, never a hang.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from pyVmomi import vim

from agent.clock import Clock
from agent.collector import Context, Emitter, MetricError
from agent.net.http import AsyncApi
from agent.ratelimit import RateLimits
from agent.statedb import StateDB
from checks.sources.azure_blob import AzureBlobLocation
from checks.sources.filelike import LocationError
from checks.sources.s3 import S3Location
from checks.sources.veeam import VeeamError, VeeamLocation
from collectors.m365 import metrics as m365_metrics
from collectors.m365.auth import AuthError, TokenSource
from collectors.m365.config import M365Config
from collectors.m365.graph import Graph, GraphError
from collectors.m365.readers import SOURCES
from collectors.meraki import api as meraki_api
from collectors.meraki import api as shape
from collectors.meraki import collector as meraki
from collectors.meraki import metrics as meraki_metrics
from collectors.meraki.api import MerakiError
from collectors.vmware import inventory, perf
from collectors.vmware.fastread import Data
from collectors.vmware.metrics import METRICS as VMWARE_METRICS
from tests.bad_input import BAD_VALUES, garbled, mutated
from tests.fakes.graph import GraphFake
from tests.fakes.veeam import VeeamFake
from tests.lab.canned_xml import RawListing, raw_listing
from tests.lab.pki import make_pki

FIXTURES = Path(__file__).parent / "fixtures"
FEW = settings(max_examples=80)  # per property: the file stays well under a minute on a loaded machine
SLOW = settings(max_examples=50)  # each example a new client: a token login, a report download, a boto3 client
# Values for replies that are text (XML listings, CSV reports); a surrogate stands for a byte that is not UTF-8.
TEXT_VALUES = st.one_of(BAD_VALUES, st.text(max_size=10), st.sampled_from([
    "-5", "abc", str(2**63), str(2**64), "1e400", "NaN", "1.5", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
    "Fri, 31 Dec 9999 23:59:59 GMT", "db-caf\udce9.sql.gz", "%FF%FE", "nightly/", "true", "x" * 100_000]))


def _one_line(exc: BaseException) -> None:
    """The module's own error: one line that says something (`--hypothesis-show-statistics` counts them)."""
    event(type(exc).__name__)
    text = str(exc)
    assert text and "\n" not in text, repr(text)


# --- vSphere: property values and QueryPerf results ------------------------------------------------
# A value in these documents stands for what collectors/vmware/fastread.py hands over: an object
# is a data object, "moref:Type:id" a managed object reference, "time:ISO" a dateTime.

def _vsphere(value: Any) -> Any:
    if isinstance(value, dict):
        data = Data()
        for name, field in value.items():
            setattr(data, str(name), _vsphere(field))
        return data
    if isinstance(value, list):
        return [_vsphere(item) for item in value]
    if isinstance(value, str) and value.startswith("moref:"):
        _, kind, moid = value.split(":", 2)
        return getattr(vim, kind)(moid)
    if isinstance(value, str) and value.startswith("time:"):
        return datetime.fromisoformat(value[5:])
    return value


ALARMS = [{"overallStatus": "red"}, {"overallStatus": "yellow"}]
VSPHERE = {
    "group-d1": ("Folder", {"name": "Datacenters"}),
    "datacenter-1": ("Datacenter", {"name": "DC0", "parent": "moref:Folder:group-d1", "triggeredAlarmState": []}),
    "domain-c1": ("ClusterComputeResource", {
        "name": "C0", "parent": "moref:Folder:group-h1", "triggeredAlarmState": ALARMS,
        "summary.effectiveCpu": 6000, "summary.effectiveMemory": 8192,
        "configurationEx": {"dasConfig": {"enabled": True}, "drsConfig": {"enabled": False}}}),
    "group-h1": ("Folder", {"name": "host", "parent": "moref:Datacenter:datacenter-1"}),
    "host-1": ("HostSystem", {
        "name": "esx-1", "parent": "moref:ClusterComputeResource:domain-c1", "overallStatus": "green",
        "triggeredAlarmState": ALARMS, "runtime.connectionState": "connected", "runtime.powerState": "poweredOn",
        "runtime.inMaintenanceMode": False, "summary.quickStats.overallCpuUsage": 1200,
        "summary.quickStats.overallMemoryUsage": 2048, "summary.quickStats.uptime": 86400,
        "summary.hardware": {"cpuMhz": 2000, "numCpuCores": 4, "memorySize": 4 << 30, "vendor": "VMware",
                             "model": "VMware7,1", "otherIdentifyingInfo": [
                                 {"identifierType": {"key": "SerialNumberTag"}, "identifierValue": " SN-1 "}]},
        "summary.config.product": {"version": "8.0.2", "build": "22380479"},
        inventory.SENSORS: [{"healthState": {"key": "green"}}, {"healthState": {"key": "red"}}]}),
    "datastore-1": ("Datastore", {
        "name": "LocalDS_0", "parent": "moref:Folder:group-s1", "triggeredAlarmState": [],
        "summary.capacity": 1 << 40, "summary.freeSpace": 1 << 39, "summary.uncommitted": 1 << 30,
        "summary.accessible": True, "summary.maintenanceMode": "normal"}),
    "vm-1": ("VirtualMachine", {
        "name": "db-1", "runtime.powerState": "poweredOn", "runtime.host": "moref:HostSystem:host-1",
        "summary.config.template": False, "triggeredAlarmState": ALARMS,
        "guest.toolsRunningStatus": "guestToolsRunning", "summary.quickStats.overallCpuUsage": 300,
        "summary.quickStats.guestMemoryUsage": 512, "summary.storage.committed": 10 << 30,
        "summary.storage.uncommitted": 1 << 30, "summary.config.guestId": "ubuntu64Guest",
        "snapshot": {"rootSnapshotList": [{"createTime": "time:2026-11-30T01:00:00+00:00", "childSnapshotList": [
            {"createTime": "time:2026-12-01T01:00:00+00:00", "childSnapshotList": []}]}]}}),
}
NOW = datetime(2026, 12, 2, tzinfo=UTC).timestamp()
VSPHERE_VALUES = BAD_VALUES | st.sampled_from(["moref:HostSystem:host-1", "moref:Folder:group-d1",
                                                "time:0001-01-01T00:00:00+14:00", "time:9999-12-31T23:59:59-14:00",
                                                "poweredOn", "connected", {"key": "green"}])


def _inventory(documents: dict[str, tuple[str, Any]]) -> inventory.Inventory:
    inv = inventory.Inventory()
    for moid, (kind, props) in documents.items():
        inv.add(getattr(vim, kind)(moid), {str(path): _vsphere(value) for path, value in
                                           (props.items() if isinstance(props, dict) else ())})
    return inv


def _vsphere_emitter() -> Emitter:
    return Emitter(VMWARE_METRICS, strict=True)


def test_the_good_inventory_is_read():
    out = _vsphere_emitter()
    selected = inventory.emit(out, _inventory(VSPHERE), inventory.Filters(), True, NOW)
    inventory.emit_sensors(out, _inventory(VSPHERE).of(vim.HostSystem), selected.host_ids)
    names = {sample.name for sample in out.samples()}
    assert {"vigil_vmware_host_cpu_usage_ratio", "vigil_vmware_vm_snapshot_oldest_age_seconds",
            "vigil_vmware_host_sensors", "vigil_vmware_alarms"} <= names  # the baseline is itself valid
    assert [name for _, name in selected.vms] == ["db-1"]


@FEW
@given(st.data(), st.sampled_from(sorted(VSPHERE)))
def test_one_vsphere_value_wrong_is_left_out_or_a_vmware_error(data, moid):
    kind, props = VSPHERE[moid]
    documents = {**VSPHERE, moid: (kind, data.draw(mutated(props, VSPHERE_VALUES)))}
    inv = _inventory(documents)
    out = _vsphere_emitter()
    try:
        selected = inventory.emit(out, inv, inventory.Filters(include=("*",)), True, NOW)
        inventory.emit_sensors(out, inv.of(vim.HostSystem), selected.host_ids)
    except MetricError as exc:
        assert "emitted twice" in str(exc)  # two objects given one name: the first is kept
    for sample in out.samples():
        assert math.isfinite(sample.value)


@pytest.mark.parametrize("moid, path, bad", [
    ("datastore-1", "summary.capacity", "1099511627776"),  # xsi:type="xsd:string": was left to the Emitter
    ("host-1", "summary.hardware", "VMware7,1"),  # was AttributeError: 'str' object has no attribute 'cpuMhz'
    ("host-1", "summary.quickStats.uptime", 10**400),  # was OverflowError in float()
    ("vm-1", "runtime.host", "host-1"),  # was AttributeError: 'str' object has no attribute '_moId'
    ("vm-1", "snapshot", {"rootSnapshotList": [{"createTime": "yesterday"}]}),  # was AttributeError
    ("domain-c1", "summary.effectiveCpu", -6000),
    ("host-1", inventory.SENSORS, [{"healthState": {"key": "moref:HostSystem:host-1"}}]),  # a moref's == raised
    ("vm-1", "guest.toolsRunningStatus", "moref:HostSystem:host-1"),
])
def test_a_vsphere_value_of_the_wrong_type_or_range_leaves_its_sample_out(moid, path, bad):
    kind, props = VSPHERE[moid]
    out, inv = _vsphere_emitter(), _inventory({**VSPHERE, moid: (kind, {**props, path: bad})})
    selected = inventory.emit(out, inv, inventory.Filters(), True, NOW)
    inventory.emit_sensors(out, inv.of(vim.HostSystem), selected.host_ids)
    names = {sample.name for sample in out.samples()}
    assert "vigil_vmware_vms" in names and "vigil_vmware_host_info" in names  # the rest of the inventory stands


PERF_COUNTERS = {6: perf.Counter(6, "cpu.ready.summation", 1e-3), 7: perf.Counter(7, "mem.swapped.average", 1024.0)}
PERF_RESULT = {"entity": "moref:HostSystem:host-1", "value": [
    {"id": {"counterId": 6, "instance": ""}, "value": [120]},
    {"id": {"counterId": 7, "instance": ""}, "value": [-1]}]}


@FEW
@given(mutated([PERF_RESULT, {**PERF_RESULT, "entity": "moref:VirtualMachine:vm-1"}], VSPHERE_VALUES))
def test_queryperf_results_are_samples_in_range_or_left_out(results):
    for ref, counter, value in perf.samples(_vsphere(results if isinstance(results, list) else [results]),
                                            PERF_COUNTERS):
        assert isinstance(ref, str) and counter in {"cpu.ready.summation", "mem.swapped.average"}
        assert math.isfinite(value) and value >= 0


def test_the_good_queryperf_result_is_read_and_no_sample_left_out():
    assert perf.samples(_vsphere([PERF_RESULT]), PERF_COUNTERS) == [("host-1", "cpu.ready.summation", 0.12)]


def test_a_queryperf_value_beyond_a_float_or_of_another_type_is_left_out():
    series = [{"id": {"counterId": 6}, "value": [10**400]}, {"id": {"counterId": 7}, "value": ["12"]},
              {"id": {"counterId": [6]}, "value": [1]}]
    assert perf.samples(_vsphere([{"entity": "moref:HostSystem:host-1", "value": series}]), PERF_COUNTERS) == []


# --- Meraki Dashboard API --------------------------------------------------------------------------

def _meraki(name: str) -> Any:
    return json.loads((FIXTURES / "meraki" / f"{name}.json").read_text(encoding="utf-8"))["example"]


def _meraki_run() -> meraki._OrgRun:
    run = meraki._OrgRun(shape.Org.model_validate(_meraki("organizations")[0]))
    run.networks = {network["id"]: network["name"] for network in _meraki("networks")}
    run.devices = {device.serial: device for device in
                   TypeAdapter(list[shape.Device]).validate_python(_meraki("devices"))}
    return run


# group: (fixture, the shape its reader checks, the key holding a page's items)
MERAKI_GROUPS = {
    "devices": ("devices_availabilities", list[shape.Availability], None),
    "uplinks": ("uplinks_statuses", list[shape.UplinkDevice], None),
    "uplink_quality": ("devices_uplinks_loss_and_latency", list[shape.LossLatency], None),
    "licenses": ("licenses_overview", shape.License, None),
    "wireless": ("wireless_channel_utilization_by_device", list[shape.Radio], None),
    "switch_ports": ("switch_ports_statuses_by_switch", list[shape.Switch], "items"),
    "alerts": ("assurance_alerts", list[shape.Alert], None),
}


def _meraki_emit(group: str, body: bytes) -> Emitter:
    """What the collector does with one answer: decode, check against the shape, emit."""
    name, model, items = MERAKI_GROUPS[group]
    what = f"organization 2930418 {name}"
    answer = meraki_api._decode(httpx.Response(200, content=body), what)
    if items is not None:
        answer = answer.get(items) if isinstance(answer, dict) else None
    data = meraki_api._validate(model, answer, what)
    run, out = _meraki_run(), Emitter(meraki.MerakiCollector.METRICS, strict=True)
    meraki.EMITTERS[group](out, run, data)
    return out


@pytest.mark.parametrize("group", sorted(MERAKI_GROUPS))
def test_the_good_meraki_answers_are_read(group):
    assert _meraki_emit(group, json.dumps(_meraki(MERAKI_GROUPS[group][0])).encode()).samples()


@FEW
@given(st.data(), st.sampled_from(sorted(MERAKI_GROUPS)))
def test_a_meraki_answer_with_one_value_wrong_is_read_or_a_meraki_error(data, group):
    document = data.draw(mutated(_meraki(MERAKI_GROUPS[group][0])))
    body = data.draw(garbled(json.dumps(document)))
    try:
        out = _meraki_emit(group, body)
    except MerakiError as exc:
        _one_line(exc)
    except MetricError as exc:
        assert "emitted twice" in str(exc)  # two devices with one serial: the first is kept
    else:
        for sample in out.samples():
            assert math.isfinite(sample.value) and sample.value >= 0, sample


@FEW
@given(st.data(), st.sampled_from(["organizations", "networks"]))
def test_meraki_organizations_and_networks_are_read_or_a_meraki_error(data, name):
    body = data.draw(garbled(json.dumps(data.draw(mutated(_meraki(name))))))
    model = shape.Org if name == "organizations" else shape.Network
    try:
        found = meraki_api._validate(list[model], meraki_api._decode(httpx.Response(200, content=body), name), name)
    except MerakiError as exc:
        _one_line(exc)
    else:
        assert all(isinstance(item.id, str) and isinstance(item.name, str) for item in found)


@pytest.mark.parametrize("field, bad", [("licensedDeviceCounts", {"MS": -1}), ("licensedDeviceCounts", {"MS": 2**63}),
                                        ("licensedDeviceCounts", {"MS": 10**400})])
def test_a_meraki_licence_count_out_of_range_is_a_meraki_error_naming_it(field, bad):
    body = json.dumps({**_meraki("licenses_overview"), field: bad}).encode()
    with pytest.raises(MerakiError, match=f"unexpected answer \\({field}.MS: "):
        _meraki_emit("licenses", body)


@pytest.mark.parametrize("bad", [-0.5, 100.5, float("nan"), float("inf")])
def test_a_meraki_loss_percentage_out_of_range_is_a_meraki_error(bad):
    (probe,) = _meraki("devices_uplinks_loss_and_latency")
    probe["timeSeries"][0]["lossPercent"] = bad
    with pytest.raises(MerakiError, match="timeSeries.0.lossPercent"):
        _meraki_emit("uplink_quality", json.dumps([probe]).encode())


def test_an_integer_beyond_a_float_is_left_out_by_the_emitter():
    out = Emitter(meraki.MerakiCollector.METRICS, strict=True)
    out.gauge(meraki_metrics.NETWORKS, 10**400, org="1")  # float() of it raises OverflowError
    assert out.samples() == ()


# --- Veeam B&R REST API, through its contract fake ------------------------------------------------

VEEAM_PASSWORD = "fuzz-password"  # noqa: S105 — the fake's own test password
VEEAM_VALUES = BAD_VALUES | st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                             "2021-12-04T06:13:34Z", "2021-12-04T06:13:34", "Stopped", "Success"])
VEEAM_ANSWERS = {"/api/v1/jobs/states": "job_states", "/api/v1/sessions": "sessions", "/api/v1/backups": "backups",
                 "/api/v1/objectRestorePoints": "restore_points", "/api/oauth2/token": "token"}


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """What the agent lends a job, for the whole module (hypothesis runs many examples in one test)."""
    clock = Clock()
    db = StateDB(tmp_path_factory.mktemp("state"))
    yield Context(clock, RateLimits(clock), db.path.parent, db)
    db.close()


@pytest.fixture(scope="module")
def veeam(tmp_path_factory, context):
    """The fake with one job, a finished session and a restore point; and a location's context."""
    pki = make_pki(tmp_path_factory.mktemp("veeam-pki"))
    with VeeamFake(pki, password=VEEAM_PASSWORD) as fake, pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIGIL_TEST_VEEAM_PASSWORD", VEEAM_PASSWORD)
        now = datetime.now(UTC).timestamp()
        job = fake.add_job("Fileserver Backup")
        fake.add_session(job, "Success", now - 3600, now - 3000)
        fake.add_restore_point(job, "fileserver", now - 3300)
        yield fake, pki, context


def _veeam_location(fake: VeeamFake, pki: Any, context: Context) -> VeeamLocation:
    config = VeeamLocation.Config.model_validate({
        "kind": "veeam", "url": fake.url, "user": "vigil", "password": "${env:VIGIL_TEST_VEEAM_PASSWORD}",
        "job": "Fileserver Backup", "ca_file": pki.ca, "timeout": "5s"})
    return VeeamLocation(config, context)


def _veeam(name: str) -> Any:
    return json.loads((FIXTURES / "veeam" / f"{name}.json").read_text(encoding="utf-8"))


def test_the_good_veeam_answers_are_read(veeam):
    fake, pki, context = veeam
    (backup,) = _veeam_location(fake, pki, context).backups()
    assert backup.ok and backup.duration == 600 and backup.name.startswith("fileserver@")


@FEW
@given(st.data(), st.sampled_from(sorted(VEEAM_ANSWERS)))
def test_a_veeam_answer_with_one_value_wrong_is_read_or_a_veeam_error(veeam, data, path):
    fake, pki, context = veeam
    document = data.draw(mutated(_veeam(VEEAM_ANSWERS[path]), VEEAM_VALUES))
    fake.malformed_next(data.draw(garbled(json.dumps(document))), path=path)
    try:
        backups = _veeam_location(fake, pki, context).backups()
    except VeeamError as exc:
        _one_line(exc)
        assert VEEAM_PASSWORD not in str(exc)
    else:
        for backup in backups:
            assert isinstance(backup.id, str) and isinstance(backup.name, str) and math.isfinite(backup.completed_at)
            assert backup.duration is None or 0 <= backup.duration < math.inf
    finally:
        with fake._lock:
            fake._canned.clear()  # an answer for a path this poll did not reach


def _veeam_page(name: str, **changes: Any) -> bytes:
    """The fixture's first item with `changes`, as a page of one."""
    return json.dumps({"data": [{**_veeam(name)["data"][0], **changes}], "pagination": {"total": 1}}).encode()


def test_a_restore_point_after_year_9999_in_utc_is_a_veeam_error_naming_the_field(veeam):
    fake, pki, context = veeam
    fake.malformed_next(_veeam_page("restore_points", creationTime="9999-12-31T23:59:59-14:00"),
                        path="/api/v1/objectRestorePoints")
    with pytest.raises(VeeamError, match=r"unexpected answer \(creationTime: .*1 to 9999 in UTC"):
        _veeam_location(fake, pki, context).backups()  # was ValueError: year 10000 is out of range


def test_a_session_that_ended_before_it_began_has_no_duration(veeam):
    fake, pki, context = veeam
    fake.malformed_next(_veeam_page("sessions", creationTime="2021-12-04T06:15:00Z", endTime="2021-12-04T06:14:00Z"),
                        path="/api/v1/sessions")
    (backup,) = _veeam_location(fake, pki, context).backups()
    assert backup.duration is None and backup.completed_at == datetime(2021, 12, 4, 6, 14, tzinfo=UTC).timestamp()


def test_a_token_that_never_expires_is_a_veeam_error(veeam):
    fake, pki, context = veeam
    fake.malformed_next(json.dumps({**_veeam("token"), "expires_in": float("inf")}).encode(), path="/api/oauth2/token")
    with pytest.raises(VeeamError, match=r"unexpected answer \(expires_in: "):
        _veeam_location(fake, pki, context).backups()


# --- Microsoft Graph and its token endpoint, through the contract fake ------------------------------

TENANT, CLIENT_ID = "7d6f2c1e-52a4-4f0e-9b1c-3a5e8d9f0a11", "0e1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
GRAPH_SECRET = "fuzz~client~secret"  # noqa: S105 — the fake's own test secret
INTUNE = "/v1.0/deviceManagement/deviceCompliancePolicyDeviceStateSummary"
# signal: (the path it reads whose answer is made wrong, the fixture of that answer)
GRAPH_ANSWERS = {
    "service_health": [("/v1.0/admin/serviceAnnouncement/healthOverviews", "healthOverviews.list"),
                       ("/v1.0/admin/serviceAnnouncement/issues", "issues.list")],
    "directory_sync": [("/v1.0/organization", "organization.get")],
    "licenses": [("/v1.0/subscribedSkus", "subscribedSkus.list")],
    "app_credentials": [("/v1.0/applications", "applications.list")],
    "secure_score": [("/v1.0/security/secureScores", "secureScores.list")],
    "intune": [(INTUNE, "deviceCompliancePolicyDeviceStateSummary.get")],
}
GRAPH_CASES = [(signal, path, name) for signal, answers in GRAPH_ANSWERS.items() for path, name in answers]


class _Tenant:
    """The fake, the config, and a Graph client on an event loop of its own that outlives each example."""

    def __init__(self, fake: GraphFake, config: M365Config, context: Context):
        self.fake, self.config, self.context = fake, config, context
        self.loop = asyncio.new_event_loop()
        self.api = AsyncApi(fake.url, context, ca_file=config.ca_file, timeout=10.0)
        self.tokens = TokenSource(config, self.api, 10.0)
        self.graph = Graph(self.api, self.tokens, context.rate_limits.bucket("graph:fuzz", 1000.0), fake.url)
        self.run(self.tokens.open())

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def read(self, signal: str) -> Emitter:
        out = Emitter(m365_metrics.METRICS, strict=True)
        self.run(SOURCES[signal].read(self.graph, out, self.config, datetime.now(UTC).timestamp()))
        return out

    def close(self) -> None:
        self.run(self.api.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def tenant(tmp_path_factory, context):
    pki = make_pki(tmp_path_factory.mktemp("graph-pki"))
    with GraphFake(pki, tenant=TENANT, client_id=CLIENT_ID, client_secret=GRAPH_SECRET) as fake, \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIGIL_TEST_GRAPH_SECRET", GRAPH_SECRET)
        config = M365Config.model_validate({
            "name": "m365", "kind": "m365", "tenant_id": TENANT, "client_id": CLIENT_ID, "authority": fake.url,
            "graph_url": fake.url, "ca_file": str(pki.ca), "client_secret": "${env:VIGIL_TEST_GRAPH_SECRET}"})
        tenant = _Tenant(fake, config, context)
        yield tenant
        tenant.close()


def _graph(name: str) -> Any:
    response = json.loads((FIXTURES / "graph" / f"{name}.json").read_text(encoding="utf-8"))["response"]
    response.pop("@odata.nextLink", None)  # to graph.microsoft.com: one page here
    return {"value": [response]} if name == "organization.get" else response  # read as a list of the one tenant


@pytest.mark.parametrize("signal", sorted(GRAPH_ANSWERS))
def test_the_good_graph_answers_are_read(tenant, signal):
    for path, name in GRAPH_ANSWERS[signal]:
        tenant.fake.malformed_next(path, json.dumps(_graph(name)).encode())
    assert tenant.read(signal).samples()


@FEW
@given(st.data(), st.sampled_from(GRAPH_CASES))
def test_a_graph_answer_with_one_value_wrong_is_read_or_a_graph_error(tenant, data, case):
    signal, path, name = case
    document = data.draw(mutated(_graph(name)))
    tenant.fake.malformed_next(path, data.draw(garbled(json.dumps(document))))
    try:
        out = tenant.read(signal)
    except GraphError as exc:
        _one_line(exc)
    except MetricError as exc:
        assert "emitted twice" in str(exc)  # an app or service listed twice: the first is kept
    else:
        for sample in out.samples():
            assert math.isfinite(sample.value), sample
    finally:
        with tenant.fake._lock:
            tenant.fake._canned.clear()  # an answer for a path this read did not reach


GIB = 1 << 30
MAILBOX = {"User Principal Name": "a@contoso.com", "Is Deleted": "False", "Storage Used (Byte)": 49 * GIB + 1,
           "Issue Warning Quota (Byte)": 49 * GIB, "Prohibit Send Quota (Byte)": 50 * GIB,
           "Prohibit Send/Receive Quota (Byte)": 50 * GIB}
SITE = {"Site URL": "https://contoso.sharepoint.com/sites/a", "Is Deleted": "False",
        "Storage Used (Byte)": 95 * GIB, "Storage Allocated (Byte)": 100 * GIB}


def _report_rows(rows: object, columns: dict) -> list[dict]:
    """The report's rows as the fake writes them: text in the documented columns."""
    return [{column: "" if row.get(column) is None else str(row.get(column)) for column in columns}
            for row in (rows if isinstance(rows, list) else []) if isinstance(row, dict)]


@SLOW
@given(mutated({"mailboxes": [MAILBOX, MAILBOX], "sites": [SITE]}, TEXT_VALUES))
def test_a_usage_report_with_one_value_wrong_is_read_or_a_graph_error(tenant, reports):
    tenant.fake.mailboxes = _report_rows(reports.get("mailboxes") if isinstance(reports, dict) else [], MAILBOX)
    tenant.fake.sites = _report_rows(reports.get("sites") if isinstance(reports, dict) else [], SITE)
    try:
        out = tenant.read("usage_reports")
    except GraphError as exc:
        _one_line(exc)
    else:
        assert all(math.isfinite(sample.value) and sample.value >= 0 for sample in out.samples())


def test_a_negative_size_in_a_usage_report_counts_as_none(tenant):
    tenant.fake.mailboxes = _report_rows([MAILBOX, {**MAILBOX, "Storage Used (Byte)": -(2**63)}], MAILBOX)
    tenant.fake.sites = _report_rows([SITE], SITE)
    storage = [s.value for s in tenant.read("usage_reports").samples() if s.name == m365_metrics.MAILBOX_STORAGE.name]
    assert storage == [49 * GIB + 1]  # was -2^63 + 49 GiB: a negative total


TOKEN = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "eyJ0eXAi.fuzz.token"}


@SLOW
@given(st.data())
def test_a_token_answer_gone_wrong_is_a_token_or_an_auth_error(tenant, data):
    document = data.draw(mutated(TOKEN))
    status = data.draw(st.sampled_from([200, 200, 200, 400, 401, 500]))
    tokens = TokenSource(tenant.config, tenant.api, 10.0)
    try:
        tenant.run(tokens.open())
        tenant.fake.token_answer_next(data.draw(garbled(json.dumps(document))), status)
        token = tenant.run(tokens.token())
    except AuthError as exc:
        _one_line(exc)
        assert GRAPH_SECRET not in str(exc)
    else:
        assert isinstance(token, str) and token
    finally:
        with tenant.fake._lock:
            tenant.fake._token_canned.clear()


def test_a_graph_count_beyond_a_float_is_left_out(tenant):
    summary = _graph("deviceCompliancePolicyDeviceStateSummary.get")
    summary["value"]["compliantDeviceCount"] = 10**400
    tenant.fake.malformed_next(INTUNE, json.dumps(summary).encode())
    counts = {sample.labels["compliance"]: sample.value for sample in tenant.read("intune").samples()}
    assert "compliant" not in counts and counts["noncompliant"] == 7  # was OverflowError: int too large


@pytest.mark.parametrize("status, body, reason", [
    (200, b"<html>Sign in</html>", "token answer is unusable (JSONDecodeError)"),
    (200, json.dumps({**TOKEN, "expires_in": float("nan")}).encode(), "token answer is unusable (ValueError)"),
    (200, json.dumps({**TOKEN, "expires_in": 1e400}).encode(), "token answer is unusable (OverflowError)"),
    (200, json.dumps({**TOKEN, "access_token": 12}).encode(), "refused the token"),
    (500, b"busy", "token answer is unusable (MsalServiceError)"),  # a 503 is retried, as every API's is
])
def test_a_token_answer_that_is_not_a_token_is_an_auth_error(tenant, status, body, reason):
    tokens = TokenSource(tenant.config, tenant.api, 10.0)
    tenant.run(tokens.open())
    tenant.fake.token_answer_next(body, status)
    with pytest.raises(AuthError, match=re.escape(reason)):
        tenant.run(tokens.token())  # was the JSONDecodeError, ValueError... of msal itself


# --- S3 and Azure Blob listings, served by a peer that answers what the test says ----------------

@pytest.fixture(scope="module")
def listing_peer():
    with pytest.MonkeyPatch.context() as patch, raw_listing() as peer:
        patch.setenv("VIGIL_TEST_STORE_KEY", "ZnV6ei1rZXk=")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield peer


def _xml(tag: str, value: Any) -> str:
    """One element of a listing; a list repeats it, an object nests, a surrogate is a raw byte (not UTF-8)."""
    if isinstance(value, list):
        return "".join(_xml(tag, item) for item in value)
    inner = "".join(_xml(str(key), item) for key, item in value.items()) if isinstance(value, dict) else \
        "" if value is None else escape(str(value))
    return f"<{tag}>{inner}</{tag}>"


def _body(root: str, attributes: str, document: dict) -> bytes:
    text = f'<?xml version="1.0" encoding="UTF-8"?><{root} {attributes}>' + _xml("x", document)[3:-4] + f"</{root}>"
    return text.encode("utf-8", "surrogateescape")


S3_LISTING = {"Name": "backups", "Prefix": "nightly/", "KeyCount": 2, "MaxKeys": 1000, "IsTruncated": "false",
              "Contents": [{"Key": f"nightly/db-{day}.sql.gz", "LastModified": f"2026-12-0{day}T01:00:00.000Z",
                            "ETag": '"9e107d9d372bb6826bd81d3542a419d6"', "Size": 1024 * day,
                            "StorageClass": "STANDARD"} for day in (1, 2)]}
AZURE_LISTING = {"Prefix": "nightly/", "MaxResults": 5000, "Blobs": {"Blob": [
    {"Name": f"nightly/db-{day}.sql.gz", "Properties": {
        "Creation-Time": f"Tue, 0{day} Dec 2026 01:00:00 GMT", "Last-Modified": f"Tue, 0{day} Dec 2026 01:00:00 GMT",
        "Etag": "0x8DBF1C2A9B3D4E5", "Content-Length": 1024 * day, "Content-Type": "application/gzip",
        "Content-MD5": "sQqNsWTgdUEFt6mb5y4/5Q==", "BlobType": "BlockBlob"}} for day in (1, 2)]}, "NextMarker": None}


def _s3(peer: RawListing, context: Context) -> S3Location:
    return S3Location(S3Location.Config.model_validate({
        "kind": "s3", "bucket": "backups", "prefix": "nightly/", "endpoint_url": f"http://127.0.0.1:{peer.server_port}",
        "region": "us-east-1", "access_key_id": "${env:VIGIL_TEST_STORE_KEY}",
        "secret_access_key": "${env:VIGIL_TEST_STORE_KEY}", "timeout": "5s"}), context)


def _azure(peer: RawListing, context: Context) -> AzureBlobLocation:
    return AzureBlobLocation(AzureBlobLocation.Config.model_validate({
        "kind": "azure_blob", "account_url": f"http://127.0.0.1:{peer.server_port}/devstoreaccount1",
        "container": "backups", "prefix": "nightly/", "credential": "${env:VIGIL_TEST_STORE_KEY}",
        "timeout": "5s"}), context)


STORES = {"s3": (_s3, "ListBucketResult", 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', S3_LISTING),
          "azure_blob": (_azure, "EnumerationResults", 'ContainerName="backups"', AZURE_LISTING)}


@pytest.mark.parametrize("store", sorted(STORES))
def test_the_good_listings_are_read(listing_peer, context, store):
    location, root, attributes, document = STORES[store]
    listing_peer.body = _body(root, attributes, document)
    backups = location(listing_peer, context).backups()
    assert [(b.name, b.size_bytes) for b in backups] == [("db-2.sql.gz", 2048), ("db-1.sql.gz", 1024)]


@SLOW
@given(st.data(), st.sampled_from(sorted(STORES)))
def test_a_listing_with_one_entry_wrong_is_read_or_a_location_error(listing_peer, context, data, store):
    location, root, attributes, document = STORES[store]
    listing_peer.body = _body(root, attributes, data.draw(mutated(document, TEXT_VALUES)))
    try:
        backups = location(listing_peer, context).backups()
    except LocationError as exc:
        _one_line(exc)
    else:
        for backup in backups:
            assert isinstance(backup.name, str) and backup.name.encode("utf-8") and backup.id == backup.name
            assert math.isfinite(backup.completed_at)
            assert backup.size_bytes is None or 0 <= backup.size_bytes <= 2**63 - 1


def _with_first(document: dict, store: str, **changes: Any) -> dict:
    document = json.loads(json.dumps(document))
    entry = document["Contents"][0] if store == "s3" else document["Blobs"]["Blob"][0]["Properties"]
    entry.update(changes)
    return document


@pytest.mark.parametrize("store, changes, reason", [
    ("s3", {"Size": "1.5"}, "the listing is not what the service sends (invalid literal for int()"),
    ("s3", {"LastModified": "yesterday"}, "the listing is not what the service sends (Invalid timestamp"),
    ("azure_blob", {"Last-Modified": None}, "'db-1.sql.gz' no time of last change"),
])
def test_a_listing_entry_out_of_range_is_a_location_error_naming_it(listing_peer, context, store, changes, reason):
    location, root, attributes, document = STORES[store]
    listing_peer.body = _body(root, attributes, _with_first(document, store, **changes))
    with pytest.raises(LocationError, match=re.escape(reason)):
        location(listing_peer, context).backups()  # was a ValueError, or a size SQLite cannot store


def test_an_azure_listing_that_is_not_xml_is_a_location_error(listing_peer, context):
    listing_peer.body = b"<EnumerationResults><Blobs><Blob><Name>x"
    with pytest.raises(LocationError, match="XML is invalid"):
        _azure(listing_peer, context).backups()  # was AttributeError: 'DecodeError' object has no attribute
