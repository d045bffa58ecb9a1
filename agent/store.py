"""The latest state of every job (by job key), as an immutable snapshot, plus the durable facts.

Only the event loop publishes (copy-on-write); exporters in other threads read
`snapshot()` without locks and always see one consistent picture. A new last success
goes to the database through one writer thread, so a slow or locked disk never
stalls the event loop; while the disk is slow only each job's newest value waits
(older ones are superseded), and close() writes what waits before closing the database.
Each job's status changes (a probe down and up again, with its reason; a job that failed;
the agent stopping) go the same way, every one kept in order: the raw material of availability.
The same thread tries the file again while the database keeps state in memory (a full
or read-only disk), so it is back in use within seconds of being fixed, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from agent.model import JobState, Result
from agent.statedb import RETRY_EVERY, StateDB

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 10.0  # seconds close() waits for queued writes (each waits at most 5 s for a lock)
STOPPED = "stopped"  # every job's status from the agent's stop to its next run: nobody was looking


def status_of(result: Result) -> tuple[str, str]:
    """A run's status and why: its own verdict (a probe's `down`, a backup's `late`), else ok, or `error`
    when the job could not run at all (vigil could not tell)."""
    if result.ok and result.verdict is not None:
        return result.verdict.status, result.verdict.detail
    return ("ok", "") if result.ok else ("error", result.error)


class Store:
    def __init__(self, db: StateDB):
        self.db = db
        self._states: Mapping[str, JobState] = MappingProxyType({})
        self._restored = db.last_successes()
        self._pending: dict[str, float] = {}  # job key -> newest last success not yet written
        self._statuses = {job: status for job, (status, _) in db.last_changes().items()}
        self._changes: list[tuple[str, float, str, str]] = []  # (job, at, status, detail) not yet written
        self._wake = threading.Condition()
        self._closed = False
        self._writer = threading.Thread(target=self._write_pending, name="vigil-store-writer", daemon=True)
        self._writer.start()

    def snapshot(self) -> Mapping[str, JobState]:
        return self._states

    def restored_last_success(self, key: str) -> float | None:
        """The last success recorded before this process started, if any."""
        return self._restored.get(key)

    def publish(self, state: JobState) -> None:
        previous = self._states.get(state.key)
        if state.last_success is not None and (previous is None or previous.last_success != state.last_success):
            with self._wake:
                if self._closed:
                    log.debug("store closed; last success not recorded job=%s", state.key)
                else:
                    self._pending[state.key] = state.last_success
                    self._wake.notify()
        if state.result is not None and (previous is None or previous.result is not state.result):
            status, detail = status_of(state.result)
            self._change(state.key, state.result.started_at, status, detail)
        self._states = MappingProxyType({**self._states, state.key: state})

    def _change(self, job: str, at: float, status: str, detail: str) -> None:
        before = self._statuses.get(job)
        if before == status:
            return
        if before is not None and status != STOPPED:
            because = f" reason={detail}" if detail else ""
            log.info("status changed job=%s from=%s to=%s%s", job, before, status, because)
        with self._wake:
            if self._closed:
                return
            self._statuses[job] = status
            self._changes.append((job, at, status, detail))
            self._wake.notify()

    def retain(self, keys: Iterable[str]) -> None:
        """Forget jobs that are no longer configured (their series disappear)."""
        keep = set(keys)
        self._states = MappingProxyType({k: v for k, v in self._states.items() if k in keep})

    def close(self) -> None:
        """Record every job stopped, write what is pending, then close the database (later writes are refused)."""
        now = time.time()
        for job in self._states:
            self._change(job, now, STOPPED, "")
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._writer.join(DRAIN_TIMEOUT)
        if self._writer.is_alive():
            log.error("state writes did not finish within %ss; closing anyway", DRAIN_TIMEOUT)
        self.db.close()

    def _write_pending(self) -> None:
        """Write the newest last successes; wake every RETRY_EVERY s to try a file that refused writes."""
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending or self._changes or self._closed, RETRY_EVERY)
                batch, self._pending = self._pending, {}
                changes, self._changes = self._changes, []
                if not batch and not changes and self._closed:  # everything written
                    return
            self.db.reconnect()
            for key, when in batch.items():
                self.db.record_success(key, when)
            if changes:
                self.db.record_changes(changes)
