"""Which module implements each `kind:`; imported only when a config uses it.

A config without VMware never imports pyvmomi: the maps hold dotted paths, not classes.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

COLLECTORS: dict[str, str] = {
    "host": "collectors.host:HostCollector",
    "m365": "collectors.m365.collector:M365Collector",
    "vmware": "collectors.vmware:VMwareCollector",
    "meraki": "collectors.meraki:MerakiCollector",
    "ups": "collectors.ups:UpsCollector",
    "nut": "collectors.nut:NutCollector",
    "ssh": "collectors.ssh:SshCollector",
}

# Kinds that are not configured as targets: the jobs each backup job brings.
JOB_KINDS: dict[str, str] = {
    "backup": "checks.job:BackupEvaluation",
    "backup_verify": "checks.job:BackupVerification",
}
BACKUP_JOBS = "checks.job:backup_jobs"  # BackupJobConfig -> its JobSpecs
BACKUP_CONFIG = "checks.config:BackupJobConfig"  # a `backups:` entry
BACKUP_REPORT = ("checks.report:backup_report", "checks.report:render")  # `vigil report backups`
BACKUP_WARNINGS = "checks.config:warnings"  # BackupJobConfig -> [(key path, what is surely wrong)]
LOCATION_CONFIG = "checks.model:LocationConfig"  # the keys every backup location has

LOCATIONS: dict[str, str] = {
    "files": "checks.sources.files:FilesLocation",
    "sftp": "checks.sources.sftp:SftpLocation",
    "restic": "checks.sources.restic:ResticLocation",
    "borg": "checks.sources.borg:BorgLocation",
    "s3": "checks.sources.s3:S3Location",
    "azure_blob": "checks.sources.azure_blob:AzureBlobLocation",
    "veeam": "checks.sources.veeam:VeeamLocation",
}


@cache
def load(path: str) -> Any:
    """The class (or function) at `module:name`."""
    module_name, _, class_name = path.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def collector_class(kind: str) -> type:
    return load(COLLECTORS[kind])


def job_class(kind: str) -> type:
    """Any kind a job may have: a target's collector or one of the backup jobs' kinds."""
    return load(COLLECTORS.get(kind) or JOB_KINDS[kind])


def location_class(kind: str) -> type:
    return load(LOCATIONS[kind])
