"""Basic auth that a flood of guesses can neither burn the CPU with nor lock good scrapers out of.

bcrypt is slow on purpose (about 60 ms at cost 10), so:
- both outcomes are remembered, bounded: a scraper with good credentials is answered from
  memory at once, whatever else waits, and a repeated wrong password costs one bcrypt;
- one bcrypt runs at a time, with at most MAX_WAITING checks queued behind it: a check
  that finds the queue full, or cannot start before its request's deadline, is refused at
  once (429) and never runs bcrypt for a client that is gone;
- like Grafana's brute-force protection, MAX_FAILURES wrong passwords for one user name,
  or from one client address, within LOCKOUT_WINDOW seconds lock that name and that
  address out: until the oldest failure leaves the window they get 429 with Retry-After,
  without a bcrypt. Only checked failures count (a refused or remembered try costs nothing),
  so a flood cannot keep a lockout going, and remembered good credentials still pass.
An unknown user is checked against a dummy hash of the same cost and locked out by its
name like a known one, so neither the time taken nor a lockout tells which users exist.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache

import bcrypt

from agent.clock import Clock

MAX_FAILURES = 5  # checked wrong passwords per user name, and per client address, within the window
LOCKOUT_WINDOW = 300.0  # seconds (Grafana's: 5 attempts in 5 minutes)
MAX_WAITING = 8  # checks queued behind the running bcrypt: half a second at cost 10
BUSY_RETRY = 1  # seconds a client refused for a full queue is asked to wait


@dataclass(frozen=True)
class Login:
    """The answer to one set of credentials: granted or not; `retry_after` seconds (429) when
    refused without a check, `why` saying which limit refused it."""

    granted: bool
    retry_after: int = 0
    why: str = ""


BUSY = Login(False, BUSY_RETRY, "too many logins waiting for a check")


class _Failures:
    """The times of recent checked failures per key (a user name or an address), for the lockout:
    at most MAX_FAILURES each, at most KEYS keys (the least recently failed are forgotten)."""

    KEYS = 4096

    def __init__(self, clock: Clock):
        self._clock = clock
        self._times: OrderedDict[tuple[str, str], tuple[float, ...]] = OrderedDict()

    def locked_for(self, key: tuple[str, str]) -> float:
        """Seconds until `key` may try again (0: now)."""
        times = self._times.get(key, ())
        if len(times) < MAX_FAILURES:
            return 0.0
        return max(0.0, times[0] + LOCKOUT_WINDOW - self._clock.monotonic())

    def copy(self) -> _Failures:
        twin = _Failures(self._clock)
        twin._times = self._times.copy()
        return twin

    def add(self, key: tuple[str, str]) -> None:
        self._times[key] = (*self._times.get(key, ()), self._clock.monotonic())[-MAX_FAILURES:]
        self._times.move_to_end(key)
        if len(self._times) > self.KEYS:
            self._times.popitem(last=False)


class BasicAuth:
    """Checks credentials against the configured bcrypt hashes (see the module's docstring)."""

    CACHE = 1024  # (user, password) pairs remembered, successes and failures alike

    def __init__(self, users: dict[str, str], clock: Clock | None = None, learnt_by: BasicAuth | None = None):
        """`learnt_by`: the instance a reload replaces, whose outcomes and failures this one keeps. An
        outcome is keyed by the hash it was checked against: a replaced hash is checked anew."""
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        cost = max((_cost(hashed) for hashed in self._users.values()), default=None)
        self._dummy = _dummy_hash(cost) if cost is not None else b""
        self._outcomes: OrderedDict[bytes, bool] = OrderedDict()
        self._failures = _Failures(clock or Clock())
        if learnt_by is not None:
            with learnt_by._lock:
                self._outcomes.update(learnt_by._outcomes)
                self._failures = learnt_by._failures.copy()
        self._waiting = 0
        self._lock = threading.Lock()  # the memory above; never held across a bcrypt
        self._bcrypt = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def known(self, user: str) -> bool:
        return user in self._users

    def check(self, user: str, password: str, client: str = "", deadline: float = math.inf) -> Login:
        """`deadline`: when (time.monotonic) the answer is no use any more; no bcrypt starts after it."""
        hashed = self._users.get(user)
        against = self._dummy if hashed is None else hashed
        key = hashlib.sha256(b"\0".join((against, user.encode(), password.encode()))).digest()
        keys = (("user", user), ("client", client)) if client else (("user", user),)
        with self._lock:
            if (answer := self._known_answer(key, keys)) is not None:
                return answer
            if self._waiting >= MAX_WAITING:
                return BUSY
            self._waiting += 1
        try:
            remaining = deadline - time.monotonic()
            started = remaining > 0 and self._bcrypt.acquire(timeout=min(remaining, threading.TIMEOUT_MAX))
        finally:
            with self._lock:
                self._waiting -= 1
        if not started:
            return BUSY
        try:
            with self._lock:  # while this one waited, another may have checked the same or locked it out
                if (answer := self._known_answer(key, keys)) is not None:
                    return answer
            try:
                granted = bcrypt.checkpw(password.encode(), against) and hashed is not None
            except ValueError:  # a malformed hash: refuse, never crash the request thread
                granted = False
            with self._lock:  # before the next check starts, so that no more than MAX_FAILURES run
                self._outcomes[key] = granted
                if len(self._outcomes) > self.CACHE:
                    self._outcomes.popitem(last=False)
                if not granted:
                    for failed in keys:
                        self._failures.add(failed)
        finally:
            self._bcrypt.release()
        return Login(granted)

    def _known_answer(self, key: bytes, keys: tuple[tuple[str, str], ...]) -> Login | None:
        """The remembered outcome, else a lockout; None when only bcrypt can tell (hold self._lock)."""
        if (granted := self._outcomes.get(key)) is not None:
            self._outcomes.move_to_end(key)
            return Login(granted)
        for failed in keys:
            if wait := self._failures.locked_for(failed):
                return Login(False, math.ceil(wait), f"too many failed logins for this {failed[0]}")
        return None


def _cost(hashed: bytes) -> int:
    """The work factor of a `$2b$NN$...` hash (10 when it cannot be read)."""
    digits = hashed[4:6]
    return int(digits) if digits.isdigit() and 4 <= int(digits) <= 31 else 10


@cache
def _dummy_hash(cost: int) -> bytes:
    """A hash of a random password, for users that do not exist: made once per cost."""
    return bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(rounds=cost))
