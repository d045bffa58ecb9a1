"""Realtime performance counters of hosts and VMs: QueryPerf in batches, a few at a time.

Counter names (`group.name.rollup`, as vSphere shows them) are resolved to ids once per
session from the PerformanceManager's catalogue. Each call asks for the newest 20 s
sample of every configured counter of up to `batch` entities (replies parsed by
collectors/vmware/fastread.py, the largest part of the work); the calls run on a small
thread pool and their results are emitted by the caller (the Emitter's signal is a
context variable of the calling thread).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from collectors.vmware import fastread
from collectors.vmware.session import Session, VMwareError

REALTIME = 20  # seconds: the interval id of realtime samples
PM = vim.PerformanceManager
# vSphere units to base units: percent is in hundredths of a percent.
UNIT_SCALE = {"millisecond": 1e-3, "microsecond": 1e-6, "second": 1.0, "kiloBytes": 1024.0,
              "megaBytes": 1024.0 ** 2, "kiloBytesPerSecond": 1024.0, "megaHertz": 1e6,
              "percent": 1e-4, "number": 1.0}


@dataclass(frozen=True)
class Counter:
    id: int
    name: str
    scale: float


class Catalogue:
    """The configured counters' ids, looked up once per session."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self._generation = -1
        self.counters: dict[int, Counter] = {}

    def resolve(self, session: Session) -> dict[int, Counter]:
        if self._generation == session.generation:
            return self.counters
        known = {}
        for info in session.content.perfManager.perfCounter:
            name = f"{info.groupInfo.key}.{info.nameInfo.key}.{info.rollupType}"
            known[name] = Counter(info.key, name, UNIT_SCALE.get(info.unitInfo.key, 1.0))
        missing = [name for name in self.names if name not in known]
        if missing:
            raise VMwareError(f"{session.where} has no performance counter {', '.join(missing)}: "
                              "check perf_counters (names are group.name.rollup, e.g. cpu.ready.summation)")
        self.counters = {known[name].id: known[name] for name in self.names}
        self._generation = session.generation
        return self.counters


def query(session: Session, counters: dict[int, Counter], entities: list[tuple[Any, str]],
          batch: int, parallel: int) -> list[tuple[str, str, float]]:
    """(moref id, counter name, value) of the newest realtime sample of each entity and counter."""
    metric_ids = [PM.MetricId(counterId=counter_id, instance="") for counter_id in counters]
    chunks = [entities[i:i + batch] for i in range(0, len(entities), batch)]
    manager = session.content.perfManager

    def one(chunk: list[tuple[Any, str]]) -> list[Any]:
        specs = [PM.QuerySpec(entity=obj, metricId=metric_ids, intervalId=REALTIME, maxSample=1)
                 for obj, _ in chunk]
        try:
            return [fastread.value(session.si._stub, returned)
                    for returned in session.invoke(manager, "QueryStats", [specs])]  # pyvmomi name of QueryPerf
        except vmodl.MethodFault as fault:
            if isinstance(fault, vim.fault.NotAuthenticated):
                raise
            raise VMwareError(f"{session.where}: QueryPerf failed ({fault.msg or type(fault).__name__})") from None

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(chunks)))) as pool:
        return samples([metric for part in pool.map(one, chunks) for metric in part], counters)


def samples(results: list[Any], counters: dict[int, Counter]) -> list[tuple[str, str, float]]:
    """(moref id, counter name, value) of each series' newest sample; a series without one is left out."""
    values = []
    for result in results:
        ref = getattr(fastread.field(result, "entity"), "_moId", None)
        for series in fastread.items(fastread.field(result, "value")) if isinstance(ref, str) else ():
            counter_id = fastread.field(fastread.field(series, "id"), "counterId")
            counter = counters.get(counter_id) if isinstance(counter_id, int) else None
            newest = fastread.items(fastread.field(series, "value"))[:1]
            value = fastread.number(newest[0]) if newest else None
            if counter is None or value is None or value < 0:
                continue  # -1: no sample for this interval (a host just connected, a VM just started)
            values.append((ref, counter.name, value * counter.scale))
    return values
