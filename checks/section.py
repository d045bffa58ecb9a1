"""The backup jobs (`backups:`) as the agent knows them: one declaration, which agent.registry points to.

Everything backup-specific the agent runs is named here: a job's config, the jobs each
brings (the evaluation, the integrity checks and the restore drills), its warnings, its tables in the state
database, `vigil report backups`, `vigil verify JOB` and `vigil drill JOB`.
"""

from __future__ import annotations

import argparse

from agent.section import Command, Report, Section
from checks.history import TABLES


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the backup job's name")


def _drill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the backup job's name")
    parser.add_argument("--location", choices=("primary", "offsite"), help="drill only this location")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (which files, why) without reading "
                                                               "any data or recording anything")


BACKUPS = Section(
    key="backups",
    what="backup job",
    entry="checks.config:BackupJobConfig",
    jobs="checks.job:backup_jobs",
    job_kinds={"backup": "checks.job:BackupEvaluation", "backup_verify": "checks.job:BackupVerification",
               "backup_drill": "checks.job:BackupDrill"},
    warnings="checks.config:warnings",
    reference="checks.config:reference",
    tables=TABLES,
    reports=(Report("backups", "Backups", ("text", "markdown", "csv", "json", "html"),
                    build="checks.report:backup_report", render="checks.report:render"),),
    commands=(Command("verify", "run a backup job's integrity checks now (restic check, borg check, checksums) "
                      "and record the outcome", "vigil verify fileserver-nightly", _verify_arguments,
                      run="checks.commands:verify"),
              Command("drill", "run a backup job's restore drill now: restore a sample of files into a hash, compare, "
                      "and record the evidence", "vigil drill fileserver-nightly --dry-run", _drill_arguments,
                      run="checks.commands:drill")),
    link="checks.config:link",
)
