"""The backup jobs (`backups:`) as the agent knows them: one declaration, which agent.registry points to.

Everything backup-specific the agent runs is named here: a job's config, the two jobs each
brings (the evaluation and the integrity checks), its warnings, its tables in the state
database, `vigil report backups` and `vigil verify JOB`.
"""

from __future__ import annotations

import argparse

from agent.section import Command, Report, Section
from checks.history import TABLES


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="the backup job's name")


BACKUPS = Section(
    key="backups",
    what="backup job",
    entry="checks.config:BackupJobConfig",
    jobs="checks.job:backup_jobs",
    job_kinds={"backup": "checks.job:BackupEvaluation", "backup_verify": "checks.job:BackupVerification"},
    warnings="checks.config:warnings",
    reference="checks.config:reference",
    tables=TABLES,
    reports=(Report("backups", "Backups", ("text", "markdown", "csv", "json", "html"),
                    build="checks.report:backup_report", render="checks.report:render"),),
    commands=(Command("verify", "run a backup job's integrity checks now (restic check, borg check, checksums) "
                      "and record the outcome", "vigil verify fileserver-nightly", _verify_arguments,
                      run="checks.commands:verify"),),
    link="checks.config:link",
)
