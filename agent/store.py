"""The latest state of every job (by job key), as an immutable snapshot, plus the durable facts.

Only the event loop writes (copy-on-write); exporters in other threads read
`snapshot()` without locks and always see one consistent picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from agent.model import JobState
from agent.statedb import StateDB


class Store:
    def __init__(self, db: StateDB):
        self.db = db
        self._states: Mapping[str, JobState] = MappingProxyType({})
        self._restored = db.last_successes()

    def snapshot(self) -> Mapping[str, JobState]:
        return self._states

    def restored_last_success(self, key: str) -> float | None:
        """The last success recorded before this process started, if any."""
        return self._restored.get(key)

    def publish(self, state: JobState) -> None:
        previous = self._states.get(state.key)
        if state.last_success is not None and (previous is None or previous.last_success != state.last_success):
            self.db.record_success(state.key, state.last_success)
        self._states = MappingProxyType({**self._states, state.key: state})

    def retain(self, keys: Iterable[str]) -> None:
        """Forget jobs that are no longer configured (their series disappear)."""
        keep = set(keys)
        self._states = MappingProxyType({k: v for k, v in self._states.items() if k in keep})

    def close(self) -> None:
        self.db.close()
