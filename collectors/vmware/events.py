"""Events that matter to backups and operations, counted by type and user, never one series each.

The first run of a session only sets the starting point (vCenter's clock); each later
run asks for the watched types since the newest event seen and counts those with a
higher key (event keys only grow), so an event is never counted twice. Snapshot
creation and removal are tasks in vCenter: a TaskEvent counts as `snapshot_created` /
`snapshot_removed` by its descriptionId, and other tasks are ignored.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pyVmomi import vim

from collectors.vmware.session import Session

SNAPSHOT_TASKS = {"VirtualMachine.createSnapshot": "snapshot_created",
                  "VirtualMachine.removeSnapshot": "snapshot_removed",
                  "VirtualMachine.removeAllSnapshots": "snapshot_removed"}
PAGE = 1000  # QueryEvents answers at most this many


class EventCounts:
    def __init__(self, types: tuple[str, ...]):
        self.types = types
        self.counts: Counter[tuple[str, str]] = Counter({(kind, ""): 0 for name in types for kind in _kinds(name)})
        self._since: Any = None
        self._last_key = -1

    def poll(self, session: Session) -> Counter[tuple[str, str]]:
        manager = session.content.eventManager
        if self._since is None:
            self._since = session.si.CurrentTime()
            return self.counts
        spec = vim.event.EventFilterSpec(eventTypeId=list(self.types),
                                         time=vim.event.EventFilterSpec.ByTime(beginTime=self._since),
                                         maxCount=PAGE)
        for event in sorted(manager.QueryEvents(spec) or (), key=lambda event: event.key):
            if event.key <= self._last_key:
                continue
            self._last_key = event.key
            self._since = max(self._since, event.createdTime)
            kind = _kind(event)
            if kind:
                self.counts[(kind, event.userName or "")] += 1
        return self.counts


def _kind(event: Any) -> str:
    if isinstance(event, vim.event.TaskEvent):
        return SNAPSHOT_TASKS.get(getattr(event.info, "descriptionId", ""), "")
    return type(event).__name__.rsplit(".", 1)[-1]


def _kinds(type_name: str) -> tuple[str, ...]:
    """The `type` labels a watched event type counts under."""
    return tuple(sorted(set(SNAPSHOT_TASKS.values()))) if type_name == "TaskEvent" else (type_name,)
