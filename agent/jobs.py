"""Turns a validated config into scheduler jobs: one per target."""

from __future__ import annotations

from dataclasses import dataclass

from agent import registry
from agent.clock import Clock
from agent.config import AgentConfig
from agent.ratelimit import RateLimits
from agent.scheduler import JobSpec


@dataclass(frozen=True)
class CollectorContext:
    """What the agent lends every collector: the clock and the shared API budgets."""

    clock: Clock
    rate_limits: RateLimits


def target_jobs(config: AgentConfig, context: CollectorContext) -> list[JobSpec]:
    jobs = []
    for target in config.targets:
        collector_class = registry.collector_class(target.kind)
        collector = collector_class(target, context)
        interval, timeout = config.schedule(target)
        jobs.append(JobSpec(target.name, target.kind, interval, timeout, collector.collect,
                            collector_class.METRICS, config=target))
    return jobs
