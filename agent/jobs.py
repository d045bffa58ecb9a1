"""Turns a validated config into scheduler jobs: one per target."""

from __future__ import annotations

from agent import registry
from agent.collector import Context
from agent.config import AgentConfig
from agent.scheduler import JobSpec


def all_jobs(config: AgentConfig, context: Context) -> list[JobSpec]:
    """One job per target, and per backup job one evaluation (plus one verification)."""
    from checks.job import backup_jobs

    return target_jobs(config, context) + [job for backup in config.backups
                                           for job in backup_jobs(backup, context)]


def target_jobs(config: AgentConfig, context: Context) -> list[JobSpec]:
    jobs = []
    for target in config.targets:
        collector_class = registry.collector_class(target.kind)
        collector = collector_class(target, context)
        interval, timeout = config.schedule(target)
        jobs.append(JobSpec(target.name, target.kind, interval, timeout, collector.collect,
                            collector_class.METRICS, config=target))
    return jobs
