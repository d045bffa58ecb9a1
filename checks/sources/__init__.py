"""Backup locations: one module per kind, each with one class (see agent.registry.LOCATIONS).

A location class has `kind`, a nested `Config(LocationConfig)`, `__init__(config,
context)`, `backups() -> list[BackupSnapshot]` (newest first; raises with a clear
reason when the location cannot be read), optionally `measure(snapshot)` (fills in
sizes that are costly to get, called once per new backup), and optionally
`verify(verify_config) -> VerifyOutcome` (integrity, on its own slow schedule).
All of them block (CLIs, SDKs): the scheduler runs them in its thread pool.
"""
