"""Turns a validated config into scheduler jobs: one per target, and those each section's entries bring."""

from __future__ import annotations

from functools import partial

from agent import registry
from agent.collector import JobSpec
from agent.config import AgentConfig


def all_jobs(config: AgentConfig) -> list[JobSpec]:
    """One job per target, and the jobs of every entry of a section (a backup job's evaluation and
    verification)."""
    return target_jobs(config) + [job for section in registry.sections() for entry in config.entries(section)
                                  for job in registry.load(section.jobs)(entry)]


def target_jobs(config: AgentConfig) -> list[JobSpec]:
    jobs = []
    for target in config.targets:
        collector = registry.collector_class(target.kind)
        interval, timeout = config.schedule(target)
        jobs.append(JobSpec(target.name, target.kind, interval, timeout, partial(collector, target),
                            collector, config=target))
    return jobs
