"""The conformance kit's helpers: build a kind from a config mapping and run it once, strictly.

Every collector's tests use these, so each kind runs exactly as the agent runs it
(validation through the registry, open/collect/close, the Emitter's checks).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from agent import registry
from agent.collector import Collector, Context, Emitter, run_once
from agent.config import AgentConfig


def build(target: dict, context: Context) -> Collector:
    """The collector for one target mapping, validated as the agent validates a config."""
    agent = AgentConfig.model_validate({"targets": [target]})
    config = agent.targets[0]
    ctx = replace(context, kind=config.kind, target=config.name)
    if config.interval is not None or config.timeout is not None:  # as the agent would lend them; else the context's
        interval, timeout = agent.schedule(config)
        ctx = replace(ctx, interval=interval, timeout=timeout)
    return registry.collector_class(config.kind)(config, ctx)


def collect(target: dict | list[dict], context: Context, due: frozenset[str] | None = None) -> Emitter | Runs:
    """Open, collect (every signal due unless `due` says) and close once, with strict metric checks.

    A list of targets (a kind no single device shows whole: ssh's Linux and Windows servers)
    is collected target by target, and the runs are seen together.
    """
    if isinstance(target, list):
        return Runs(tuple(collect(one, context, due) for one in target))
    return asyncio.run(run_once(build(target, context), due, strict=True))


@dataclass(frozen=True)
class Runs:
    """Several targets' runs read as one by `values` and `assert_conforms`."""

    runs: tuple[Emitter, ...]

    @property
    def errors(self) -> dict[str, str]:
        return {f"{index}:{signal}": error
                for index, run in enumerate(self.runs) for signal, error in run.errors.items()}

    @property
    def ran(self) -> set[str]:
        return set().union(*(run.ran for run in self.runs))

    def samples(self, signal: str = "main") -> tuple:
        return tuple(sample for run in self.runs for sample in run.samples(signal))


def values(out: Emitter | Runs, name: str, signal: str | None = None) -> dict[tuple, float]:
    """{sorted label items: value} of one metric, from every signal or one."""
    signals = [signal] if signal else sorted(out.ran)
    return {tuple(sorted(s.labels.items())): s.value
            for sig in signals for s in out.samples(sig) if s.name == name}


def assert_conforms(out: Emitter | Runs, collector_class: type[Collector]) -> None:
    """The conformance rule: every declared family is emitted on the fixture, nothing else, no signal failed."""
    assert not out.errors, f"signals failed on the conformance fixture: {out.errors}"
    declared = {spec.name for spec in collector_class.METRICS}
    emitted = {sample.name for signal in out.ran for sample in out.samples(signal)}
    assert emitted == declared, (f"declared but not emitted: {sorted(declared - emitted)}; "
                                 f"emitted but not declared: {sorted(emitted - declared)}")
