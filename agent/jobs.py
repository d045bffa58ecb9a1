"""Turns a validated config into scheduler jobs: one per target, and the backup jobs' own."""

from __future__ import annotations

from functools import partial

from agent import registry
from agent.collector import JobSpec
from agent.config import AgentConfig


def all_jobs(config: AgentConfig) -> list[JobSpec]:
    """One job per target, and per backup job one evaluation (plus one verification)."""
    backup_jobs = registry.load(registry.BACKUP_JOBS)
    return target_jobs(config) + [job for backup in config.backups for job in backup_jobs(backup)]


def target_jobs(config: AgentConfig) -> list[JobSpec]:
    jobs = []
    for target in config.targets:
        collector = registry.collector_class(target.kind)
        interval, timeout = config.schedule(target)
        jobs.append(JobSpec(target.name, target.kind, interval, timeout, partial(collector, target),
                            collector, config=target))
    return jobs
