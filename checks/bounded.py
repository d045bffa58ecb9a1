"""A location's calls bounded by the evaluation's own deadline, so a dead location is `unreachable`.

A location bounds each of its steps with its own `timeout`, but a black-holed host can
spend that on every step (connect, then the tool's own connect, then each retry) and
outlast the evaluation: the scheduler would then give up on the whole job, whose
status becomes unknown. Here each call runs in a thread of its own and the evaluation
stops waiting for it in time to judge the location unreachable. The thread is left to
end on its own timeouts; while it runs, the location is not called again (never two
calls piling up on one dead host).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agent.units import format_duration


class Overdue(Exception):
    """A location call that did not return before the evaluation's deadline."""


class _Call(threading.Thread):
    def __init__(self, work: Callable[[], Any], name: str):
        super().__init__(name=name, daemon=True)
        self._work, self.started_at = work, time.monotonic()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self._work()
        except BaseException as exc:  # handed to the waiting evaluation, which reports it
            self.error = exc


class BoundedCalls:
    """At most one call per location at a time, each waited on until a deadline (time.monotonic)."""

    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}

    def start(self, key: str, work: Callable[[], Any]) -> None:
        """Start `work` unless the location's previous call is still running (then that one is waited on)."""
        running = self._calls.get(key)
        if running is not None and running.is_alive():
            return
        call = self._calls[key] = _Call(work, f"location {key}")
        call.start()

    def result(self, key: str, deadline: float, what: str) -> Any:
        """The value of the call (or its exception, raised), or Overdue once the deadline passes."""
        call = self._calls[key]
        call.join(max(0.0, deadline - time.monotonic()))
        if call.is_alive():
            raise Overdue(f"{what}: no answer after {format_duration(time.monotonic() - call.started_at)}, "
                          "before this evaluation's timeout; check that the host is up and its port reachable "
                          "(with the location's `timeout:` below the job's, its own error shows here)")
        del self._calls[key]
        if call.error is not None:
            raise call.error
        return call.value

    def call(self, key: str, work: Callable[[], Any], deadline: float, what: str) -> Any:
        self.start(key, work)
        return self.result(key, deadline, what)
