"""The `vigil_vmware_*` catalogue: what one vCenter (or ESXi host) target emits.

Object labels are the inventory names (host, vm, datastore, cluster), bounded by the
include/exclude filters; VM families can be turned off per target (`vm_metrics: false`).
"""

from agent.model import Condition, MetricSpec

CACHED = " Refreshed on the agent's schedule, never by a scrape."

HOST_CONNECTED = MetricSpec("vigil_vmware_host_connected", "gauge",
                            "1 when vCenter reports the host connected (0: disconnected or not responding).",
                            ("host",))
HOST_CONNECTION = MetricSpec("vigil_vmware_host_connection_state", "gauge",
                             "The host's connection state, one-hot: connected, disconnected, notResponding.",
                             ("host", "state"))
HOST_POWER = MetricSpec("vigil_vmware_host_power_state", "gauge",
                        "The host's power state, one-hot: poweredOn, poweredOff, standBy, unknown.",
                        ("host", "state"))
HOST_MAINTENANCE = MetricSpec("vigil_vmware_host_maintenance", "gauge", "1 when the host is in maintenance mode.",
                              ("host",))
HOST_STATUS = MetricSpec("vigil_vmware_host_status", "gauge",
                         "The host's overall status, one-hot: green, yellow, red, gray.", ("host", "status"))
HOST_CPU_USAGE = MetricSpec("vigil_vmware_host_cpu_usage_ratio", "gauge",
                            "CPU in use as a share of the host's capacity (0-1)." + CACHED, ("host",), "ratio")
HOST_CPU_CAPACITY = MetricSpec("vigil_vmware_host_cpu_capacity_hertz", "gauge",
                               "The host's CPU capacity: cores times core frequency.", ("host",), "hertz")
HOST_MEMORY_USAGE = MetricSpec("vigil_vmware_host_memory_usage_ratio", "gauge",
                               "Memory in use as a share of the host's memory (0-1)." + CACHED, ("host",), "ratio")
HOST_MEMORY_CAPACITY = MetricSpec("vigil_vmware_host_memory_capacity_bytes", "gauge",
                                  "The host's physical memory.", ("host",), "bytes")
HOST_UPTIME = MetricSpec("vigil_vmware_host_uptime_seconds", "gauge", "Time since the host booted.",
                         ("host",), "seconds")
HOST_SENSORS = MetricSpec("vigil_vmware_host_sensors", "gauge",
                          "Hardware sensors of the host by health state (green, yellow, red, unknown); "
                          "refreshed every sensors_every (5m).",
                          ("host", "state"))
HOST_INFO = MetricSpec("vigil_vmware_host_info", "gauge",
                       "ESXi version and build, hardware vendor, model and serial; value 1.",
                       ("host", "version", "build", "vendor", "model", "serial"))

CLUSTER_CPU = MetricSpec("vigil_vmware_cluster_cpu_effective_hertz", "gauge",
                         "CPU the cluster's good hosts offer to VMs.", ("cluster",), "hertz")
CLUSTER_MEMORY = MetricSpec("vigil_vmware_cluster_memory_effective_bytes", "gauge",
                            "Memory the cluster's good hosts offer to VMs.", ("cluster",), "bytes")
CLUSTER_HA = MetricSpec("vigil_vmware_cluster_ha_enabled", "gauge", "1 when vSphere HA is on for the cluster.",
                        ("cluster",))
CLUSTER_DRS = MetricSpec("vigil_vmware_cluster_drs_enabled", "gauge", "1 when DRS is on for the cluster.",
                         ("cluster",))
CLUSTER_HOSTS = MetricSpec("vigil_vmware_cluster_hosts", "gauge",
                           "Hosts of the cluster by state: connected, disconnected, notResponding, maintenance.",
                           ("cluster", "state"))

DS_LABELS = ("datastore",)
DS_CAPACITY = MetricSpec("vigil_vmware_datastore_capacity_bytes", "gauge", "Datastore size.", DS_LABELS, "bytes")
DS_FREE = MetricSpec("vigil_vmware_datastore_free_bytes", "gauge", "Free datastore space." + CACHED,
                     DS_LABELS, "bytes")
DS_UNCOMMITTED = MetricSpec("vigil_vmware_datastore_uncommitted_bytes", "gauge",
                            "Space thin disks may still claim: provisioned minus used.", DS_LABELS, "bytes")
DS_ACCESSIBLE = MetricSpec("vigil_vmware_datastore_accessible", "gauge", "1 when the datastore is accessible.",
                           DS_LABELS)
DS_MAINTENANCE = MetricSpec("vigil_vmware_datastore_maintenance", "gauge",
                            "1 when the datastore is in (or entering) maintenance mode.", DS_LABELS)

VMS = MetricSpec("vigil_vmware_vms", "gauge", "VMs by power state (poweredOn, poweredOff, suspended).",
                 ("state",))
VM_POWERED_ON = MetricSpec("vigil_vmware_vm_powered_on", "gauge", "1 when the VM is powered on.", ("vm",))
VM_TOOLS = MetricSpec("vigil_vmware_vm_tools_running", "gauge",
                      "1 when VMware Tools run in the guest (left out for a powered-off VM).", ("vm",))
VM_CPU_USAGE = MetricSpec("vigil_vmware_vm_cpu_usage_hertz", "gauge", "CPU the VM uses." + CACHED,
                          ("vm",), "hertz")
VM_MEMORY_USAGE = MetricSpec("vigil_vmware_vm_memory_usage_bytes", "gauge",
                             "Guest memory the VM actively uses." + CACHED, ("vm",), "bytes")
VM_STORAGE_COMMITTED = MetricSpec("vigil_vmware_vm_storage_committed_bytes", "gauge",
                                  "Datastore space the VM's files use.", ("vm",), "bytes")
VM_STORAGE_UNCOMMITTED = MetricSpec("vigil_vmware_vm_storage_uncommitted_bytes", "gauge",
                                    "Datastore space the VM may still claim (thin disks).", ("vm",), "bytes")
VM_SNAPSHOTS = MetricSpec("vigil_vmware_vm_snapshots", "gauge", "Number of snapshots of the VM.", ("vm",))
VM_SNAPSHOT_AGE = MetricSpec("vigil_vmware_vm_snapshot_oldest_age_seconds", "gauge",
                             "Age of the VM's oldest snapshot (a snapshot a backup run left behind grows old).",
                             ("vm",), "seconds")
VM_INFO = MetricSpec("vigil_vmware_vm_info", "gauge", "Where the VM runs and its guest OS; value 1.",
                     ("vm", "host", "cluster", "guest_os"))

ALARMS = MetricSpec("vigil_vmware_alarms", "gauge",
                    "Triggered alarms by entity name and severity (red, yellow).", ("entity", "severity"))

HOST_PERF = MetricSpec("vigil_vmware_host_perf", "gauge",
                       "Latest realtime (20s) sample of a performance counter of a host, in base units "
                       "(milliseconds as seconds, kilobytes as bytes, percent as ratio).", ("host", "counter"))
VM_PERF = MetricSpec("vigil_vmware_vm_perf", "gauge",
                     "Latest realtime (20s) sample of a performance counter of a VM, in base units "
                     "(milliseconds as seconds, kilobytes as bytes, percent as ratio).", ("vm", "counter"))

EVENTS = MetricSpec("vigil_vmware_events_total", "counter",
                    "vCenter events of the watched types since the agent's session began, by type and user.",
                    ("type", "user"))

INVENTORY = (HOST_CONNECTED, HOST_CONNECTION, HOST_POWER, HOST_MAINTENANCE, HOST_STATUS, HOST_CPU_USAGE,
             HOST_CPU_CAPACITY, HOST_MEMORY_USAGE, HOST_MEMORY_CAPACITY, HOST_UPTIME, HOST_INFO,
             CLUSTER_CPU, CLUSTER_MEMORY, CLUSTER_HA, CLUSTER_DRS, CLUSTER_HOSTS,
             DS_CAPACITY, DS_FREE, DS_UNCOMMITTED, DS_ACCESSIBLE, DS_MAINTENANCE,
             VMS, VM_POWERED_ON, VM_TOOLS, VM_CPU_USAGE, VM_MEMORY_USAGE, VM_STORAGE_COMMITTED,
             VM_STORAGE_UNCOMMITTED, VM_SNAPSHOTS, VM_SNAPSHOT_AGE, VM_INFO, ALARMS)
METRICS = (*INVENTORY, HOST_SENSORS, HOST_PERF, VM_PERF, EVENTS)

# deploy/prometheus/rules/vmware.yml
CONDITIONS = (
    Condition("VMwareHostDisconnected", "critical", "vigil_vmware_host_connected == 0", "host {host} disconnected"),
    Condition("VMwareHostInMaintenance", "warning", "vigil_vmware_host_maintenance == 1",
              "host {host} in maintenance mode"),
    Condition("VMwareDatastoreFilling", "warning",
              "vigil_vmware_datastore_free_bytes / vigil_vmware_datastore_capacity_bytes < 0.1",
              "datastore {datastore} {value:percent} free"),
    Condition("VMwareSnapshotTooOld", "warning", "vigil_vmware_vm_snapshot_oldest_age_seconds > 3 * 86400",
              "{vm} has a snapshot {value:duration} old"),
    Condition("VMwareTooManySnapshots", "warning", "vigil_vmware_vm_snapshots > 3", "{vm} has {value:count snapshot}"),
    Condition("VMwareRedAlarm", "critical", 'vigil_vmware_alarms{severity="red"} > 0',
              "{value:count red alarm} on {entity}"),
    Condition("VMwareToolsNotRunning", "warning", "vigil_vmware_vm_tools_running == 0",
              "VMware Tools not running in {vm}"),
)
