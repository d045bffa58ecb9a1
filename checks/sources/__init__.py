"""Backup locations: one module per kind, each with one class (LOCATIONS), imported only when a config uses it.

A location class has `kind`, a nested `Config(LocationConfig)`, `__init__(config,
context)`, `backups() -> list[BackupSnapshot]` (newest first; raises with a clear
reason when the location cannot be read), optionally `measure(snapshot)` (fills in
sizes that are costly to get, called once per new backup), and optionally
`verify(verify_config) -> VerifyOutcome` (integrity, on its own slow schedule).
All of them block (CLIs, SDKs): the scheduler runs them in its thread pool.
"""

from __future__ import annotations

from agent import registry

LOCATIONS: dict[str, str] = {
    "files": "checks.sources.files:FilesLocation",
    "sftp": "checks.sources.sftp:SftpLocation",
    "restic": "checks.sources.restic:ResticLocation",
    "borg": "checks.sources.borg:BorgLocation",
    "s3": "checks.sources.s3:S3Location",
    "azure_blob": "checks.sources.azure_blob:AzureBlobLocation",
    "veeam": "checks.sources.veeam:VeeamLocation",
}


def location_class(kind: str) -> type:
    return registry.load(LOCATIONS[kind])
