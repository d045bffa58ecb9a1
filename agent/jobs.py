"""Turns a validated config into scheduler jobs: one per target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent import registry
from agent.clock import Clock
from agent.config import AgentConfig
from agent.ratelimit import RateLimits
from agent.scheduler import JobSpec
from agent.statedb import StateDB


@dataclass(frozen=True)
class CollectorContext:
    """What the agent lends every job: the clock, the shared API budgets, durable state."""

    clock: Clock
    rate_limits: RateLimits
    state_dir: Path  # for caches a tool keeps between runs (restic, borg)
    db: StateDB  # the history the backup checks keep


def all_jobs(config: AgentConfig, context: CollectorContext) -> list[JobSpec]:
    """One job per target, and per backup job one evaluation (plus one verification)."""
    from checks.job import backup_jobs

    return target_jobs(config, context) + [job for backup in config.backups
                                           for job in backup_jobs(backup, context)]


def target_jobs(config: AgentConfig, context: CollectorContext) -> list[JobSpec]:
    jobs = []
    for target in config.targets:
        collector_class = registry.collector_class(target.kind)
        collector = collector_class(target, context)
        interval, timeout = config.schedule(target)
        jobs.append(JobSpec(target.name, target.kind, interval, timeout, collector.collect,
                            collector_class.METRICS, config=target))
    return jobs
