"""One tool listing per repository, reused while the repository is unchanged.

restic derives its key on every call (about 0.8 CPU-s), so listing 50 repositories every
few minutes to learn that nothing changed costs a steady share of a core. A location
gives a cheap `fingerprint` of the repository's state (restic: the names under
`snapshots/`; borg: the latest transaction): while it is the one taken before the last
listing, that listing is the answer. Any change, a new snapshot as much as a forgotten
or pruned one, changes the fingerprint and the tool runs again: the fingerprint never
stands in for the tool's answer after a change.

Jobs over one repository (several host or tag filters) share the listing: they wait for
the one running instead of starting their own. Where no fingerprint can be read, a
listing serves each of the other jobs once within SHARE seconds (one cycle of the jobs
over it), never the same job twice, and the fallback is logged once per repository.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.reasons import describe
from checks.model import Fingerprinted, Location, declares

log = logging.getLogger(__name__)

SHARE = 30.0  # seconds a listing without a fingerprint serves the other jobs over the repository


@dataclass
class _Listing:
    fingerprint: str | None
    at: float
    value: Any
    served: set[int] = field(default_factory=set)  # the readers it has answered (without a fingerprint)


class Listings:
    """The last listing of each repository, keyed by what identifies it (repository and credentials)."""

    def __init__(self) -> None:
        self._listings: dict[str, _Listing] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._fallbacks: set[str] = set()

    def get(self, key: str, reader: Location, now: float, listing: Callable[[], Any]) -> Any:
        """The repository's listing for `reader` (a location): the last one if it still holds, else `listing()`."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            current = self._fingerprint(key, reader)
            last = self._listings.get(key)
            if last is not None and (current == last.fingerprint if current is not None else
                                     last.fingerprint is None and id(reader) not in last.served
                                     and 0 <= now - last.at < SHARE):
                last.served.add(id(reader))
                return last.value
            value = listing()
            self._listings[key] = _Listing(current, now, value, {id(reader)})
            return value

    def _fingerprint(self, key: str, reader: Location) -> str | None:
        if not declares(reader, Fingerprinted):
            return None
        try:
            return reader.fingerprint()
        except Exception as exc:  # the tool answers instead; said once per repository
            if key not in self._fallbacks:
                self._fallbacks.add(key)
                log.info("backup repository layout not readable, listing with the tool every poll "
                         "repository=%s reason=%s", reader.where, describe(exc))
            return None


LISTINGS = Listings()
