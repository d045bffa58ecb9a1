"""A list in the config beside `targets:` whose entries bring jobs of their own (`backups:`).

The agent knows such a section only through its declaration, which the registry points to
(agent.registry.SECTIONS): the model of one entry, the jobs each entry brings, what is legal
in one but surely wrong, the tables it keeps in the state database, its reports and its own
commands. What implements them is named `module:name` and imported on first use, so a config
that does not use the section never imports it; only the declaration itself, its tables and
its commands' arguments are read at every start.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# What `vigil` and a section's commands exit with
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


@dataclass(frozen=True)
class Tables:
    """Tables in the state database: their DDL, and the columns added since a first release."""

    ddl: str  # CREATE TABLE IF NOT EXISTS ...
    added_columns: tuple[tuple[str, str, str], ...] = ()  # (table, column, definition): an older file gets them


@dataclass(frozen=True)
class Report:
    """`vigil report <name>`: a summary of the section's history, for people."""

    name: str
    title: str  # its heading, before the period it covers
    formats: tuple[str, ...]  # the first is the default
    build: str  # `module:function`: (state database, the section's entries, now, days) -> rows
    render: str  # `module:function`: (rows, format, title) -> text


@dataclass(frozen=True)
class Command:
    """A command of the section's own, `vigil <name> ...`."""

    name: str
    summary: str
    example: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: str  # `module:function`: (parsed arguments, agent.config.LoadedConfig) -> exit code


@dataclass(frozen=True)
class Section:
    """What the agent needs to know of a section: everything else is the section's own."""

    key: str  # its key in the config file: `backups`
    what: str  # how messages name one entry: `backup job`
    entry: str  # `module:Class`: the model of one entry
    jobs: str  # `module:function`: an entry -> its agent.collector.JobSpecs
    job_kinds: Mapping[str, str]  # the kinds of those jobs -> `module:Class` (docs/metrics.md, rules, `vigil once`)
    warnings: str  # `module:function`: an entry -> [(key path in it, what is surely wrong)]
    reference: str  # `module:function`: () -> [(title, model, inherited model)] for docs/config.md
    tables: Tables
    reports: tuple[Report, ...] = ()
    commands: tuple[Command, ...] = ()
    # `module:function`: (an entry, the targets by name) -> [(key path in it, problem)]: an entry that names
    # targets (a restore drill's ssh server) gets them, as ssh's `via:` does; "" when entries name none
    link: str = ""
