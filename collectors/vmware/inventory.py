"""The whole inventory in one paged PropertyCollector read, and the samples made from it.

Only the properties the metrics need are asked for, per type, over one ContainerView of
the root folder: a handful of round trips whatever the size. Folders and datacenters
come along (name and parent only) so each object's datacenter and cluster are known
for the include/exclude filters without a walk per object.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

from pyVmomi import vim, vmodl

from agent.collector import Emitter
from collectors.vmware import metrics as m

PC = vmodl.query.PropertyCollector
ALARM = "triggeredAlarmState"

HOST_PROPS = ["name", "parent", "overallStatus", ALARM, "runtime.connectionState", "runtime.powerState",
              "runtime.inMaintenanceMode",
              "summary.quickStats.overallCpuUsage", "summary.quickStats.overallMemoryUsage",
              "summary.quickStats.uptime", "summary.hardware", "summary.config.product"]
VM_STATE_PROPS = ["name", "runtime.powerState", "runtime.host", "summary.config.template"]
VM_PROPS = [*VM_STATE_PROPS, ALARM, "guest.toolsRunningStatus", "summary.quickStats.overallCpuUsage",
            "summary.quickStats.guestMemoryUsage", "summary.storage.committed", "summary.storage.uncommitted",
            "snapshot", "summary.config.guestId"]
CLUSTER_PROPS = ["name", "parent", ALARM, "summary.effectiveCpu", "summary.effectiveMemory",
                 "configurationEx"]
DATASTORE_PROPS = ["name", "parent", ALARM, "summary.capacity", "summary.freeSpace", "summary.uncommitted",
                   "summary.accessible", "summary.maintenanceMode"]
SENSORS = "runtime.healthSystemRuntime.systemHealthInfo.numericSensorInfo"
CONNECTION_STATES = ("connected", "disconnected", "notResponding")
POWER_STATES = ("poweredOn", "poweredOff", "standBy", "unknown")
VM_POWER_STATES = ("poweredOn", "poweredOff", "suspended")
STATUSES = ("green", "yellow", "red", "gray")
SENSOR_STATES = ("green", "yellow", "red", "unknown")
SEVERITIES = ("red", "yellow")
MHZ, MIB = 1e6, 1024 * 1024


def sensor_specs() -> list[Any]:
    """Hardware sensors: tens per host, a third of the whole read, and slow to change: a slow signal."""
    return [PC.PropertySpec(type=vim.HostSystem, pathSet=["name", SENSORS])]


def prop_specs(vm_metrics: bool) -> list[Any]:
    spec = PC.PropertySpec
    return [spec(type=vim.Folder, pathSet=["name", "parent"]),
            spec(type=vim.Datacenter, pathSet=["name", "parent", ALARM]),
            spec(type=vim.ComputeResource, pathSet=["name", "parent"]),
            spec(type=vim.ClusterComputeResource, pathSet=CLUSTER_PROPS),
            spec(type=vim.HostSystem, pathSet=HOST_PROPS),
            spec(type=vim.Datastore, pathSet=DATASTORE_PROPS),
            spec(type=vim.VirtualMachine, pathSet=VM_PROPS if vm_metrics else VM_STATE_PROPS)]


@dataclass(frozen=True)
class Filters:
    datacenters: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def datacenter(self, datacenter: str) -> bool:
        return _any(datacenter, self.datacenters, True)

    def place(self, datacenter: str, cluster: str) -> bool:
        """Hosts, VMs and clusters: in a chosen datacenter and cluster (a standalone host has none)."""
        return self.datacenter(datacenter) and _any(cluster, self.clusters, True)

    def name(self, name: str) -> bool:
        return _any(name, self.include, True) and not _any(name, self.exclude, False)


def _any(value: str, patterns: tuple[str, ...], empty: bool) -> bool:
    return any(fnmatch(value, pattern) for pattern in patterns) if patterns else empty


@dataclass
class Inventory:
    """The objects of one read by moref id, kept between signals of a run (QueryPerf needs the hosts and VMs)."""

    objects: dict[str, tuple[Any, dict[str, Any]]] = field(default_factory=dict)

    def add(self, obj: Any, props: dict[str, Any]) -> None:
        self.objects[obj._moId] = (obj, props)

    def of(self, kind: type) -> list[tuple[Any, dict[str, Any]]]:
        return [(obj, props) for obj, props in self.objects.values() if type(obj) is kind]

    def datacenter(self, ref: Any) -> str:
        """The name of the datacenter above an object, through its folders."""
        seen = 0
        while ref is not None and seen < 64:
            obj, props = self.objects.get(ref._moId, (None, {}))
            if obj is None:
                return ""
            if isinstance(obj, vim.Datacenter):
                return props.get("name", "")
            ref, seen = props.get("parent"), seen + 1
        return ""

    def cluster(self, parent: Any) -> str:
        """A host's cluster name, "" for a standalone host."""
        if isinstance(parent, vim.ClusterComputeResource):
            return self.objects.get(parent._moId, (None, {}))[1].get("name", "")
        return ""


@dataclass
class Selected:
    """The objects that passed the filters, for QueryPerf."""

    hosts: list[tuple[Any, str]] = field(default_factory=list)  # (moref, name) of connected hosts
    host_ids: set[str] = field(default_factory=set)  # moref ids of every included host
    vms: list[tuple[Any, str]] = field(default_factory=list)  # (moref, name) of powered-on VMs


def emit(out: Emitter, inv: Inventory, filters: Filters, vm_metrics: bool, now: float) -> Selected:
    selected = Selected()
    alarms: Counter[tuple[str, str]] = Counter()
    host_place: dict[str, tuple[str, str, bool]] = {}  # moref id -> (name, cluster, included)
    cluster_hosts: dict[str, Counter[str]] = {}

    for obj, props in inv.of(vim.ClusterComputeResource):
        name = props.get("name", "")
        if not (filters.place(inv.datacenter(obj), name) and filters.name(name)):
            continue
        cluster_hosts[obj._moId] = Counter()
        _count_alarms(alarms, name, props)
        out.gauge(m.CLUSTER_CPU, _scaled(props.get("summary.effectiveCpu"), MHZ), cluster=name)
        out.gauge(m.CLUSTER_MEMORY, _scaled(props.get("summary.effectiveMemory"), MIB), cluster=name)
        config = props.get("configurationEx")
        das = getattr(config, "dasConfig", None)
        drs = getattr(config, "drsConfig", None)
        # `enabled` defaults to false: a config that leaves it out (vcsim does) has it off
        out.gauge(m.CLUSTER_HA, None if das is None else int(bool(das.enabled)), cluster=name)
        out.gauge(m.CLUSTER_DRS, None if drs is None else int(bool(drs.enabled)), cluster=name)

    for obj, props in inv.of(vim.HostSystem):
        name = props.get("name", "")
        parent = props.get("parent")
        cluster = inv.cluster(parent)
        included = filters.place(inv.datacenter(obj), cluster) and filters.name(name)
        host_place[obj._moId] = (name, cluster, included)
        if not included:
            continue
        selected.host_ids.add(obj._moId)
        state = str(props.get("runtime.connectionState", ""))
        maintenance = bool(props.get("runtime.inMaintenanceMode"))
        if parent is not None and parent._moId in cluster_hosts:
            cluster_hosts[parent._moId]["maintenance" if maintenance else state] += 1
        if state == "connected":
            selected.hosts.append((obj, name))
        _host(out, name, state, maintenance, props)
        _count_alarms(alarms, name, props)

    for cluster_id, counts in cluster_hosts.items():
        name = inv.objects[cluster_id][1].get("name", "")
        for state in (*CONNECTION_STATES, "maintenance"):
            out.gauge(m.CLUSTER_HOSTS, counts[state], cluster=name, state=state)

    for obj, props in inv.of(vim.Datastore):
        name = props.get("name", "")
        if not (filters.datacenter(inv.datacenter(obj)) and filters.name(name)):
            continue
        _datastore(out, name, props)
        _count_alarms(alarms, name, props)

    powered: Counter[str] = Counter()
    for obj, props in inv.of(vim.VirtualMachine):
        name = props.get("name", "")
        host = props.get("runtime.host")
        host_name, cluster, host_included = host_place.get(host._moId if host is not None else "", ("", "", False))
        if props.get("summary.config.template") or not host_included or not filters.name(name):
            continue
        power = str(props.get("runtime.powerState", ""))
        powered[power] += 1
        if not vm_metrics:
            continue
        if power == "poweredOn":
            selected.vms.append((obj, name))
        _vm(out, name, power, host_name, cluster, props, now)
        _count_alarms(alarms, name, props)
    for state in VM_POWER_STATES:
        out.gauge(m.VMS, powered[state], state=state)

    for _, props in inv.of(vim.Datacenter):
        name = props.get("name", "")
        if filters.datacenter(name):
            _count_alarms(alarms, name, props)
    for (entity, severity), count in sorted(alarms.items()):
        out.gauge(m.ALARMS, count, entity=entity, severity=severity)
    return selected


def _host(out: Emitter, name: str, state: str, maintenance: bool, props: dict[str, Any]) -> None:
    out.gauge(m.HOST_CONNECTED, int(state == "connected"), host=name)
    _one_hot(out, m.HOST_CONNECTION, state, CONNECTION_STATES, host=name)
    _one_hot(out, m.HOST_POWER, str(props.get("runtime.powerState", "")), POWER_STATES, host=name)
    out.gauge(m.HOST_MAINTENANCE, int(maintenance), host=name)
    _one_hot(out, m.HOST_STATUS, str(props.get("overallStatus", "")), STATUSES, host=name, label="status")
    hardware = props.get("summary.hardware")
    capacity_mhz = (hardware.cpuMhz * hardware.numCpuCores) if hardware and hardware.cpuMhz else None
    memory = hardware.memorySize if hardware else None
    cpu_used = props.get("summary.quickStats.overallCpuUsage")
    memory_used = props.get("summary.quickStats.overallMemoryUsage")  # MiB
    if state == "connected":
        out.gauge(m.HOST_CPU_USAGE, cpu_used / capacity_mhz if cpu_used is not None and capacity_mhz else None,
                  host=name)
        out.gauge(m.HOST_MEMORY_USAGE, memory_used * MIB / memory if memory_used is not None and memory else None,
                  host=name)
        out.gauge(m.HOST_UPTIME, props.get("summary.quickStats.uptime"), host=name)
    out.gauge(m.HOST_CPU_CAPACITY, _scaled(capacity_mhz, MHZ), host=name)
    out.gauge(m.HOST_MEMORY_CAPACITY, memory, host=name)
    product = props.get("summary.config.product")
    out.gauge(m.HOST_INFO, 1, host=name, version=getattr(product, "version", "") or "",
              build=getattr(product, "build", "") or "", vendor=getattr(hardware, "vendor", "") or "",
              model=getattr(hardware, "model", "") or "", serial=_serial(hardware))


def emit_sensors(out: Emitter, hosts: list[tuple[Any, dict[str, Any]]], included: set[str]) -> None:
    for obj, props in hosts:
        sensors = props.get(SENSORS)
        if obj._moId not in included or not sensors:
            continue
        states = Counter(_sensor_state(sensor) for sensor in sensors)
        for state in SENSOR_STATES:
            out.gauge(m.HOST_SENSORS, states[state], host=props.get("name", ""), state=state)


def _datastore(out: Emitter, name: str, props: dict[str, Any]) -> None:
    out.gauge(m.DS_CAPACITY, props.get("summary.capacity"), datastore=name)
    out.gauge(m.DS_FREE, props.get("summary.freeSpace"), datastore=name)
    out.gauge(m.DS_UNCOMMITTED, props.get("summary.uncommitted") or 0, datastore=name)
    out.gauge(m.DS_ACCESSIBLE, _flag(props.get("summary.accessible")), datastore=name)
    mode = props.get("summary.maintenanceMode")
    out.gauge(m.DS_MAINTENANCE, None if mode is None else int(mode != "normal"), datastore=name)


def _vm(out: Emitter, name: str, power: str, host: str, cluster: str, props: dict[str, Any], now: float) -> None:
    out.gauge(m.VM_POWERED_ON, int(power == "poweredOn"), vm=name)
    if power == "poweredOn":
        tools = props.get("guest.toolsRunningStatus")
        out.gauge(m.VM_TOOLS, None if tools is None else int(tools == "guestToolsRunning"), vm=name)
        out.gauge(m.VM_CPU_USAGE, _scaled(props.get("summary.quickStats.overallCpuUsage"), MHZ), vm=name)
        out.gauge(m.VM_MEMORY_USAGE, _scaled(props.get("summary.quickStats.guestMemoryUsage"), MIB), vm=name)
    out.gauge(m.VM_STORAGE_COMMITTED, props.get("summary.storage.committed"), vm=name)
    out.gauge(m.VM_STORAGE_UNCOMMITTED, props.get("summary.storage.uncommitted"), vm=name)
    created = list(_snapshot_times(getattr(props.get("snapshot"), "rootSnapshotList", None) or []))
    out.gauge(m.VM_SNAPSHOTS, len(created), vm=name)
    if created:
        out.gauge(m.VM_SNAPSHOT_AGE, max(0.0, now - min(created)), vm=name)
    out.gauge(m.VM_INFO, 1, vm=name, host=host, cluster=cluster, guest_os=props.get("summary.config.guestId") or "")


def _snapshot_times(tree: list[Any]) -> Any:
    for node in tree:
        if node.createTime is not None:
            yield node.createTime.timestamp()
        yield from _snapshot_times(node.childSnapshotList or [])


def _count_alarms(alarms: Counter[tuple[str, str]], entity: str, props: dict[str, Any]) -> None:
    for alarm in props.get(ALARM) or ():
        severity = str(alarm.overallStatus)
        if severity in SEVERITIES:
            alarms[(entity, severity)] += 1


def _one_hot(out: Emitter, spec: Any, value: str, states: tuple[str, ...], label: str = "state",
             **labels: str) -> None:
    if value not in states:
        return  # an unknown enum from a newer vCenter: no series rather than a wrong one
    for state in states:
        out.gauge(spec, int(state == value), **labels, **{label: state})


def _sensor_state(sensor: Any) -> str:
    key = getattr(sensor.healthState, "key", "unknown") if sensor.healthState else "unknown"
    return key if key in SENSOR_STATES else "unknown"


def _serial(hardware: Any) -> str:
    """The serial number, from the identifiers ESXi reports (SerialNumberTag since 6.7, ServiceTag before)."""
    found = {}
    for ident in getattr(hardware, "otherIdentifyingInfo", None) or ():
        key = getattr(ident.identifierType, "key", "")
        found.setdefault(key, (ident.identifierValue or "").strip())
    return found.get("SerialNumberTag") or found.get("ServiceTag") or ""


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))
