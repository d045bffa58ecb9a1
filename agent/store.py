"""The latest state of every job (by job key), as an immutable snapshot, plus the durable facts.

Only the event loop publishes (copy-on-write); exporters in other threads read
`snapshot()` without locks and always see one consistent picture. A new last success
goes to the database through one writer thread, so a slow or locked disk never
stalls the event loop; while the disk is slow only each job's newest value waits
(older ones are superseded), and close() writes what waits before closing the database.
The same thread tries the file again while the database keeps state in memory (a full
or read-only disk), so it is back in use within seconds of being fixed, without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from agent.model import JobState
from agent.statedb import RETRY_EVERY, StateDB

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 10.0  # seconds close() waits for queued writes (each waits at most 5 s for a lock)


class Store:
    def __init__(self, db: StateDB):
        self.db = db
        self._states: Mapping[str, JobState] = MappingProxyType({})
        self._restored = db.last_successes()
        self._pending: dict[str, float] = {}  # job key -> newest last success not yet written
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
        self._states = MappingProxyType({**self._states, state.key: state})

    def retain(self, keys: Iterable[str]) -> None:
        """Forget jobs that are no longer configured (their series disappear)."""
        keep = set(keys)
        self._states = MappingProxyType({k: v for k, v in self._states.items() if k in keep})

    def close(self) -> None:
        """Write what is pending, then close the database (later writes are refused)."""
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
                self._wake.wait_for(lambda: self._pending or self._closed, RETRY_EVERY)
                batch, self._pending = self._pending, {}
                if not batch and self._closed:  # everything written
                    return
            self.db.reconnect()
            for key, when in batch.items():
                self.db.record_success(key, when)
