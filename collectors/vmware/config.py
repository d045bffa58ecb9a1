"""`kind: vmware`: a vCenter or ESXi host, its read-only account, what to include, and the slow signals'
intervals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from agent.ondisk import CaFile
from agent.schema import Duration, TargetConfig
from agent.secrets import Secret

DEFAULT_COUNTERS = ("cpu.ready.summation", "mem.vmmemctl.average", "mem.swapped.average",
                    "disk.maxTotalLatency.latest", "net.droppedRx.summation", "net.droppedTx.summation")
DEFAULT_EVENTS = ("TaskEvent", "HostConnectionLostEvent", "HostDisconnectedEvent", "HostShutdownEvent",
                  "DasHostFailedEvent", "VmRestartedOnAlternateHostEvent", "VmFailoverFailed",
                  "VmPoweredOffEvent")


class VMwareConfig(TargetConfig):
    RENAMED: ClassVar[Mapping[str, str]] = {"tls_verify": "`insecure_skip_verify: true` (off by default, logged)"}
    kind: Literal["vmware"]
    host: str = Field(description="the vCenter (or ESXi) host name or address")
    port: int = Field(443, ge=1, le=65535, description="its HTTPS port")
    user: str = Field(description="a read-only user, e.g. monitor@vsphere.local")
    password: Secret = Field(description="its password, by reference: ${cred:vcenter}")
    ca_file: CaFile | None = Field(None, description="the CA that signed vCenter's certificate; trusted alone, "
                                                     "whatever SSL_CERT_FILE or REQUESTS_CA_BUNDLE say")
    insecure_skip_verify: bool = Field(False, description="accept any certificate (a lab's vcsim); logged as a "
                                                          "warning at every login")
    datacenters: tuple[str, ...] = Field((), description="datacenter names to include (fnmatch patterns; "
                                                         "empty: all)")
    clusters: tuple[str, ...] = Field((), description="cluster names to include (fnmatch patterns; empty: all, "
                                                      "standalone hosts too)")
    include: tuple[str, ...] = Field((), description="host, VM, datastore and cluster names to include "
                                                     "(fnmatch patterns; empty: all)")
    exclude: tuple[str, ...] = Field((), description="names to leave out (fnmatch patterns)")
    vm_metrics: bool = Field(True, description="per-VM series; false keeps only the VM counts by power state")
    page_size: int = Field(1000, ge=10, le=10000, description="objects per PropertyCollector round trip")
    perf_counters: tuple[str, ...] = Field(DEFAULT_COUNTERS, description="performance counters of hosts and "
                                           "VMs (group.name.rollup); empty turns the perf signal off")
    perf_batch: int = Field(100, ge=1, le=1000, description="entities per QueryPerf call")
    perf_parallel: int = Field(4, ge=1, le=16, description="QueryPerf calls at once")
    event_types: tuple[str, ...] = Field(DEFAULT_EVENTS, description="event types to count (TaskEvent counts "
                                         "snapshot creation and removal); empty turns the events signal off")
    events_every: Duration = Field(600, description="how often events are read (a slow signal)")
    sensors_every: Duration = Field(300, description="how often hosts' hardware sensors are read (a slow signal)")
