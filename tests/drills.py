"""Restore drills in tests: a sink that hashes what a location restores, and a drill of one location as the job
runs it (its backups seen first, so their first-seen checksums are recorded)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from checks.drill import Driller, Outcome
from checks.history import BackupHistory, DrillFile
from checks.model import Candidate, DrillConfig, Drilled

JOB = "nightly"
# What a store sends beside the content, as the lab's relay counts it (tests/lab/relay.py):
SLACK = 8 << 10  # per connection: the TLS handshake (the certificate chain), record framing, HTTP headers
DRILL_SLACK = 64 << 10  # per drill: the listing, each object's HEAD or properties, a few connections


class Hashed:
    """A sink: the bytes' sha256 and md5 and their count; `then(size)` is called after each write (to cancel a
    restore midway)."""

    def __init__(self, then: Callable[[int], None] | None = None):
        self.sha256, self.md5, self.size = hashlib.sha256(), hashlib.md5(), 0
        self._then = then

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)
        if self._then:
            self._then(self.size)


def candidates(location: Drilled) -> dict:
    """What a drill of the location may restore, by path."""
    return {candidate.path: candidate for candidate in location.candidates(location.backups())}


def restored(location: Drilled, candidate: Candidate, cancel: threading.Event | None = None,
             then: Callable[[int], None] | None = None) -> Hashed:
    """The candidate restored into a Hashed sink."""
    sink = Hashed(then)
    location.restore(candidate, sink, cancel or threading.Event())
    return sink


def seen(location: Drilled, context, where: str = "primary") -> None:
    """The evaluation's poll: every listed backup recorded, with the checksum it has now (first seen)."""
    BackupHistory(context.db, JOB).record(where, location.backups(), {}, context.clock.time())


def drill(location: Drilled, context, cancel: threading.Event | None = None, where: str = "primary",
          progress: Callable[[str, DrillFile], None] = lambda where, file: None, **config) -> Outcome:
    """One drill of the location (DrillConfig's fields as keywords); `progress` is told of each file done."""
    return Driller(location, where, None, DrillConfig(**config), BackupHistory(context.db, JOB), context,
                   cancel or threading.Event()).run(progress)


def deleting_the_rest(delete: Callable[[str], None], paths: set[str]) -> Callable[[str, DrillFile], None]:
    """A drill's progress that, once the first file is done, deletes the other backups (`paths`): they were listed
    and planned, and are gone when their turn comes."""
    pending = set(paths)

    def progress(where: str, done: DrillFile) -> None:
        if done.path in pending:
            for path in pending - {done.path}:
                delete(path)
            pending.clear()

    return progress
