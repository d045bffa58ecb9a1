"""Backup locations: one module per kind, each with one class (LOCATIONS), imported only when a config uses it.

A location class has `kind`, a nested `Config(LocationConfig)` and `__init__(config,
context)`, and subclasses the protocols of checks.model it implements: `Location`
(`backups()`, newest first, raising with a clear reason when the location cannot be read;
`where`; `close()`), and as it can `Measured` (`measure(snapshot)` fills in what is costly to
get, once per new backup), `Verified` (`verify(verify_config)`, integrity on its own slow
schedule) and `Fingerprinted` (`fingerprint()`, a cheap digest of a repository's state).
All of them block (CLIs, SDKs): the scheduler runs them in threads of their own.
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
