"""What a probe's protocol module (http, tcp, tls, ...) reports to its Probe (collector.py): the phases it
timed, and ProbeFailed when the service is not as expected. Apart from collector.py, which imports the
protocol modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ProbeFailed(Exception):
    """The service did not answer as expected; the text is the reason, for people."""


class Phases:
    """The duration of each phase of one probe, and the phase under way (for a reason)."""

    def __init__(self, monotonic) -> None:
        self._monotonic = monotonic
        self._started = monotonic()
        self.current = ""
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started, self.current = self._monotonic(), name
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self._monotonic() - started
        self.current = ""  # only when it ended: a phase cut short by the deadline stays named for the reason

    def total(self) -> float:
        return self._monotonic() - self._started
