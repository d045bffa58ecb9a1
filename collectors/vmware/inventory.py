"""The whole inventory in one paged PropertyCollector read, and the samples made from it.

Only the properties the metrics need are asked for, per type, over one ContainerView of
the root folder: a handful of round trips whatever the size. Folders and datacenters
come along (name and parent only) so each object's datacenter and cluster are known
for the include/exclude filters without a walk per object.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatch
from typing import Any

from pyVmomi import VmomiSupport, vim, vmodl

from agent.collector import Emitter
from collectors.vmware import metrics as m
from collectors.vmware.fastread import field as _field
from collectors.vmware.fastread import items as _items
from collectors.vmware.fastread import number

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
        while _ref(ref) and seen < 64:
            obj, props = self.objects.get(_ref(ref), (None, {}))
            if obj is None:
                return ""
            if isinstance(obj, vim.Datacenter):
                return _text(props.get("name"))
            ref, seen = props.get("parent"), seen + 1
        return ""

    def cluster(self, parent: Any) -> str:
        """A host's cluster name, "" for a standalone host."""
        if isinstance(parent, vim.ClusterComputeResource):
            return _text(self.objects.get(parent._moId, (None, {}))[1].get("name"))
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
        name = _text(props.get("name"))
        if not (filters.place(inv.datacenter(obj), name) and filters.name(name)):
            continue
        cluster_hosts[obj._moId] = Counter()
        _count_alarms(alarms, name, props)
        out.gauge(m.CLUSTER_CPU, _scaled(props.get("summary.effectiveCpu"), MHZ), cluster=name)
        out.gauge(m.CLUSTER_MEMORY, _scaled(props.get("summary.effectiveMemory"), MIB), cluster=name)
        config = props.get("configurationEx")
        das, drs = _field(config, "dasConfig"), _field(config, "drsConfig")
        # `enabled` defaults to false: a config that leaves it out (vcsim does) has it off
        out.gauge(m.CLUSTER_HA, None if das is None else int(_field(das, "enabled") is True), cluster=name)
        out.gauge(m.CLUSTER_DRS, None if drs is None else int(_field(drs, "enabled") is True), cluster=name)

    for obj, props in inv.of(vim.HostSystem):
        name = _text(props.get("name"))
        parent = props.get("parent")
        cluster = inv.cluster(parent)
        included = filters.place(inv.datacenter(obj), cluster) and filters.name(name)
        host_place[obj._moId] = (name, cluster, included)
        if not included:
            continue
        selected.host_ids.add(obj._moId)
        state = str(props.get("runtime.connectionState", ""))
        maintenance = props.get("runtime.inMaintenanceMode") is True
        if _ref(parent) in cluster_hosts:
            cluster_hosts[_ref(parent)]["maintenance" if maintenance else state] += 1
        if state == "connected":
            selected.hosts.append((obj, name))
        _host(out, name, state, maintenance, props)
        _count_alarms(alarms, name, props)

    for cluster_id, counts in cluster_hosts.items():
        name = _text(inv.objects[cluster_id][1].get("name"))
        for state in (*CONNECTION_STATES, "maintenance"):
            out.gauge(m.CLUSTER_HOSTS, counts[state], cluster=name, state=state)

    for obj, props in inv.of(vim.Datastore):
        name = _text(props.get("name"))
        if not (filters.datacenter(inv.datacenter(obj)) and filters.name(name)):
            continue
        _datastore(out, name, props)
        _count_alarms(alarms, name, props)

    powered: Counter[str] = Counter()
    for obj, props in inv.of(vim.VirtualMachine):
        name = _text(props.get("name"))
        host_name, cluster, host_included = host_place.get(_ref(props.get("runtime.host")), ("", "", False))
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
        name = _text(props.get("name"))
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
    mhz, cores = number(_field(hardware, "cpuMhz")), number(_field(hardware, "numCpuCores"))
    capacity_mhz = mhz * cores if mhz and cores and mhz > 0 and cores > 0 else None
    memory = _size(_field(hardware, "memorySize"))
    cpu_used = _size(props.get("summary.quickStats.overallCpuUsage"))
    memory_used = _size(props.get("summary.quickStats.overallMemoryUsage"))  # MiB
    if state == "connected":
        out.gauge(m.HOST_CPU_USAGE, cpu_used / capacity_mhz if cpu_used is not None and capacity_mhz else None,
                  host=name)
        out.gauge(m.HOST_MEMORY_USAGE, memory_used * MIB / memory if memory_used is not None and memory else None,
                  host=name)
        out.gauge(m.HOST_UPTIME, _size(props.get("summary.quickStats.uptime")), host=name)
    out.gauge(m.HOST_CPU_CAPACITY, _scaled(capacity_mhz, MHZ), host=name)
    out.gauge(m.HOST_MEMORY_CAPACITY, memory, host=name)
    product = props.get("summary.config.product")
    out.gauge(m.HOST_INFO, 1, host=name, version=_text(_field(product, "version")),
              build=_text(_field(product, "build")), vendor=_text(_field(hardware, "vendor")),
              model=_text(_field(hardware, "model")), serial=_serial(hardware))


def emit_sensors(out: Emitter, hosts: list[tuple[Any, dict[str, Any]]], included: set[str]) -> None:
    for obj, props in hosts:
        sensors = _items(props.get(SENSORS))
        if obj._moId not in included or not sensors:
            continue
        states = Counter(_sensor_state(sensor) for sensor in sensors)
        for state in SENSOR_STATES:
            out.gauge(m.HOST_SENSORS, states[state], host=_text(props.get("name")), state=state)


def _datastore(out: Emitter, name: str, props: dict[str, Any]) -> None:
    out.gauge(m.DS_CAPACITY, _size(props.get("summary.capacity")), datastore=name)
    out.gauge(m.DS_FREE, _size(props.get("summary.freeSpace")), datastore=name)
    uncommitted = props.get("summary.uncommitted")
    out.gauge(m.DS_UNCOMMITTED, 0 if uncommitted is None else _size(uncommitted), datastore=name)
    out.gauge(m.DS_ACCESSIBLE, _flag(props.get("summary.accessible")), datastore=name)
    mode = props.get("summary.maintenanceMode")
    out.gauge(m.DS_MAINTENANCE, int(mode != "normal") if isinstance(mode, str) else None, datastore=name)


def _vm(out: Emitter, name: str, power: str, host: str, cluster: str, props: dict[str, Any], now: float) -> None:
    out.gauge(m.VM_POWERED_ON, int(power == "poweredOn"), vm=name)
    if power == "poweredOn":
        tools = props.get("guest.toolsRunningStatus")
        out.gauge(m.VM_TOOLS, int(tools == "guestToolsRunning") if isinstance(tools, str) else None, vm=name)
        out.gauge(m.VM_CPU_USAGE, _scaled(props.get("summary.quickStats.overallCpuUsage"), MHZ), vm=name)
        out.gauge(m.VM_MEMORY_USAGE, _scaled(props.get("summary.quickStats.guestMemoryUsage"), MIB), vm=name)
    out.gauge(m.VM_STORAGE_COMMITTED, _size(props.get("summary.storage.committed")), vm=name)
    out.gauge(m.VM_STORAGE_UNCOMMITTED, _size(props.get("summary.storage.uncommitted")), vm=name)
    created = list(_snapshot_times(_field(props.get("snapshot"), "rootSnapshotList")))
    out.gauge(m.VM_SNAPSHOTS, len(created), vm=name)
    if created:
        out.gauge(m.VM_SNAPSHOT_AGE, max(0.0, now - min(created)), vm=name)
    out.gauge(m.VM_INFO, 1, vm=name, host=host, cluster=cluster, guest_os=_text(props.get("summary.config.guestId")))


def _snapshot_times(tree: object, depth: int = 0) -> Any:
    """Creation times of a snapshot tree (vSphere allows 32 levels; a deeper reply is cut there)."""
    for node in _items(tree) if depth < 64 else ():
        created = _field(node, "createTime")
        if isinstance(created, datetime):
            try:
                yield created.timestamp()
            except (OverflowError, ValueError):  # year 1 at +14:00: before datetime's first moment in UTC
                pass
        yield from _snapshot_times(_field(node, "childSnapshotList"), depth + 1)


def _count_alarms(alarms: Counter[tuple[str, str]], entity: str, props: dict[str, Any]) -> None:
    for alarm in _items(props.get(ALARM)):
        severity = str(_field(alarm, "overallStatus"))
        if severity in SEVERITIES:
            alarms[(entity, severity)] += 1


def _one_hot(out: Emitter, spec: Any, value: str, states: tuple[str, ...], label: str = "state",
             **labels: str) -> None:
    if value not in states:
        return  # an unknown enum from a newer vCenter: no series rather than a wrong one
    for state in states:
        out.gauge(spec, int(state == value), **labels, **{label: state})


def _sensor_state(sensor: Any) -> str:
    key = _text(_field(_field(sensor, "healthState"), "key"))  # a moref's == raises for a str
    return key if key in SENSOR_STATES else "unknown"


def _serial(hardware: Any) -> str:
    """The serial number, from the identifiers ESXi reports (SerialNumberTag since 6.7, ServiceTag before)."""
    found = {}
    for ident in _items(_field(hardware, "otherIdentifyingInfo")):
        key = _text(_field(_field(ident, "identifierType"), "key"))
        found.setdefault(key, _text(_field(ident, "identifierValue")).strip())
    return found.get("SerialNumberTag") or found.get("ServiceTag") or ""


def _scaled(value: object, factor: float) -> float | None:
    size = _size(value)
    return None if size is None else size * factor


def _size(value: object) -> float | None:
    """A size, count or duration: a number of zero or more, else None (the sample is left out)."""
    found = number(value)
    return found if found is not None and found >= 0 else None


def _flag(value: object) -> int | None:
    return int(value) if isinstance(value, bool) else None


# A value read from a reply has the type its xsi:type names, which need not be the declared one:
# these read only what has the expected type.

def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _ref(value: object) -> str:
    """A managed object reference's id, "" for anything else."""
    moid = value._moId if isinstance(value, VmomiSupport.ManagedObject) else None
    return moid if isinstance(moid, str) else ""
