"""Which module implements each `kind:`, and each section beside `targets:`; imported only when used.

A config without VMware never imports pyvmomi: the maps hold dotted paths, not classes.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.section import Section

COLLECTORS: dict[str, str] = {
    "host": "collectors.server.collector:HostCollector",
    "m365": "collectors.m365.collector:M365Collector",
    "vmware": "collectors.vmware.collector:VMwareCollector",
    "meraki": "collectors.meraki.collector:MerakiCollector",
    "ups": "collectors.ups.collector:UpsCollector",
    "nut": "collectors.nut.collector:NutCollector",
    "ssh": "collectors.ssh.collector:SshCollector",
    "http": "collectors.probes.collector:HttpProbe",
    "tcp": "collectors.probes.collector:TcpProbe",
    "dns": "collectors.probes.collector:DnsProbe",
    "icmp": "collectors.probes.collector:IcmpProbe",
    # the database probes (issue 22)
    "postgres": "collectors.probes.collector:PostgresProbe",
    "mysql": "collectors.probes.collector:MysqlProbe",
}

# The lists beside `targets:` whose entries bring jobs of their own: config key -> its declaration
# (agent.section.Section), which names the rest.
SECTIONS: dict[str, str] = {
    "backups": "checks.section:BACKUPS",
}


@cache
def load(path: str) -> Any:
    """The class (or function) at `module:name`."""
    module_name, _, class_name = path.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def collector_class(kind: str) -> type:
    return load(COLLECTORS[kind])


def section(key: str) -> Section:
    return load(SECTIONS[key])


def sections() -> list[Section]:
    return [section(key) for key in SECTIONS]


def job_kinds() -> dict[str, str]:
    """The kinds of the jobs the sections' entries bring (a backup job's evaluation and verification)."""
    return {kind: path for declared in sections() for kind, path in declared.job_kinds.items()}


def job_class(kind: str) -> type:
    """Any kind a job may have: a target's collector or one of the kinds a section's entries bring."""
    return load(COLLECTORS.get(kind) or job_kinds()[kind])
