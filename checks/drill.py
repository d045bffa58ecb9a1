"""Restore drills: a rotating sample of a backup restored into a hash and compared with an independent reference.

A drill of one location lists its backups, plans which files to restore (`plan`: the newest,
the largest that fits, then the next files of a ring that a salted hash of each path orders,
from where the last drill stopped), streams each into a `Digest` (nothing is written to disk),
and compares the hash with the first reference available. A file is damaged or mismatched
only when a fresh second restore says the same while the backup is still there: a prune, a
rotation or a flaky network make it `unreadable` (could not drill), never a false failure.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from agent.clock import Clock
from agent.collector import Context
from agent.reasons import describe
from agent.units import format_size
from checks.history import BackupHistory, Drill, DrillFile
from checks.model import Candidate, DrillConfig, DrillDamage, Drilled, DrillNotRun

log = logging.getLogger(__name__)

RING = 1 << 60  # ring positions: 60 bits of sha256, an SQLite integer
LARGEST_KEPT = 32  # the largest files kept while streaming, to pick the largest that fits what the newest left
WINDOW = 4  # the ring's next files kept while streaming, per file of the budget (some are skipped for size)
SELF_CHECKING = frozenset({"restic", "borg"})  # their restores check every chunk against its id
PASSED = ("match", "restored")
FAILED = ("mismatch", "damaged")
RESULTS = ("match", "restored", "skipped", "mismatch", "damaged", "unreadable")
CANCELLED = "cancelled"


class Digest:
    """The sink a restore streams into: sha256 and md5 as the bytes arrive, and their count.

    More bytes than the listing said is damage; a set `cancel` or a spent time budget stops the restore.
    """

    def __init__(self, candidate: Candidate, cancel: threading.Event, expired: Callable[[], bool] = lambda: False,
                 md5: bool = True):
        self.candidate, self._cancel, self._expired = candidate, cancel, expired
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None  # only an md5 reference needs it
        self.bytes = 0

    def write(self, data: bytes) -> None:
        if self._cancel.is_set():
            raise DrillNotRun(CANCELLED)
        if self._expired():
            raise DrillNotRun("the drill's time ran out")
        self.bytes += len(data)
        if self.bytes > self.candidate.size:
            raise DrillDamage(f"{self.candidate.path}: more bytes than listed ({self.candidate.size})")
        self.sha256.update(data)
        if self.md5 is not None:
            self.md5.update(data)

    def finish(self) -> None:
        """After the restore: fewer bytes than listed is damage too."""
        if self.bytes != self.candidate.size:
            raise DrillDamage(f"{self.candidate.path}: {self.bytes} bytes restored, {self.candidate.size} listed")

    def hexdigest(self, algorithm: str) -> str | None:
        """The restored content's digest in `algorithm` (sha256, md5), None for another."""
        found = {"sha256": self.sha256, "md5": self.md5}.get(algorithm)  # md5 None: not asked for
        return found.hexdigest() if found else None


# The plan: which files a drill restores


@dataclass(frozen=True)
class Pick:
    candidate: Candidate
    why: str  # newest, largest, rotation
    position: int  # on the ring


@dataclass(frozen=True)
class Plan:
    """What a drill restores, and where the rotation stands before and after it (the same listing and cursor
    give the same plan, so `vigil drill --dry-run` shows what the drill will do)."""

    picks: tuple[Pick, ...]
    salt: str
    cursor_from: int
    cursor_to: int
    lap: int  # the lap the cursor is in once this drill is done
    listed: int  # candidates that fit max_bytes (the ring)
    passed: int  # of those, how many the rotation passed in this lap
    oversized: int  # candidates over max_bytes: never drilled
    largest_oversized: Candidate | None

    @property
    def bytes(self) -> int:
        return sum(pick.candidate.size for pick in self.picks)

    @property
    def coverage(self) -> float | None:
        return self.passed / self.listed if self.listed else None

    def oversized_note(self, max_bytes: int) -> str:
        if not self.oversized:
            return ""
        largest = self.largest_oversized
        return (f"{self.oversized} file(s) over max_bytes ({format_size(max_bytes)}) are never drilled, the largest "
                f"{largest.path} ({format_size(largest.size)})")

    def oversized_row(self, max_bytes: int) -> DrillFile | None:
        """The largest file over max_bytes, recorded as skipped so that auditors see what is never drilled."""
        largest = self.largest_oversized
        if largest is None:
            return None
        return DrillFile(largest.path, "largest", largest.size, largest.mtime, largest.ctime, "", "", "skipped",
                         f"over max_bytes ({format_size(max_bytes)}): never drilled, the largest of "
                         f"{self.oversized} such file(s)")


def ring_position(salt: str, path: str) -> int:
    """Where a file sits on the ring: a salted hash, so each job and location walks its files in its own order."""
    return int.from_bytes(hashlib.sha256(f"{salt}\0{path}".encode("utf-8", "surrogateescape")).digest()[:8]) >> 4


def plan(candidates: Iterable[Candidate], salt: str, cursor: int, lap: int, files: int, max_bytes: int) -> Plan:
    """Spend the budget (`files`, `max_bytes`) on the newest file, the largest that fits what is left, then files in
    ring order after `cursor`, wrapping, skipping any too large for what is left.

    The listing is streamed into small heaps (the newest, the largest, the ring's next few after the cursor), so
    memory stays the same for millions of files.
    """
    newest: tuple | None = None
    largest: list[tuple] = []  # a min-heap of the LARGEST_KEPT largest
    ahead: list[tuple] = []  # a max-heap (negated) of the ring's next files after the cursor
    kept = files * WINDOW + 16
    listed = before = oversized = 0
    largest_oversized: Candidate | None = None
    for seq, candidate in enumerate(candidates):
        if candidate.size > max_bytes:
            oversized += 1
            if largest_oversized is None or (candidate.size, candidate.path) > (largest_oversized.size,
                                                                                largest_oversized.path):
                largest_oversized = candidate
            continue
        listed += 1
        position = ring_position(salt, candidate.path)
        before += position <= cursor
        when = (-1e300 if candidate.mtime is None else candidate.mtime, candidate.path)
        if newest is None or when > newest[0]:
            newest = (when, position, candidate)
        _keep(largest, (candidate.size, candidate.path, seq, position, candidate), LARGEST_KEPT)
        distance = (position - cursor - 1) % RING
        _keep(ahead, (-distance, -seq, position, candidate), kept)

    picks: list[Pick] = []
    budget = max_bytes
    if newest is not None:
        picks.append(Pick(newest[2], "newest", newest[1]))
        budget -= newest[2].size
    taken = {pick.candidate.path for pick in picks}
    big = next((item for item in sorted(largest, reverse=True) if item[1] not in taken and item[0] <= budget), None)
    if big is not None and len(picks) < files:
        picks.append(Pick(big[4], "largest", big[3]))
        budget -= big[0]
        taken.add(big[1])

    cursor_to, lap_to, walked, wrapped, passed = cursor, lap, 0, False, before
    for _, _, position, candidate in sorted(ahead, reverse=True):
        fresh = candidate.path not in taken  # the newest and the largest are passed, not drilled twice
        if fresh and len(picks) >= files:
            break
        walked += 1
        if position <= cursor and not wrapped:
            wrapped, walked = True, 1  # past the ring's origin: a new lap
        if fresh:
            if candidate.size > budget:
                continue
            picks.append(Pick(candidate, "rotation", position))
            budget -= candidate.size
        cursor_to, lap_to = position, lap + wrapped
        passed = walked if wrapped else before + walked
    return Plan(tuple(picks), salt, cursor, cursor_to, lap_to, listed, passed, oversized, largest_oversized)


def _keep(heap: list, item: tuple, size: int) -> None:
    if len(heap) < size:
        heapq.heappush(heap, item)
    elif item > heap[0]:
        heapq.heapreplace(heap, item)


# The drill: restore, compare, record


@dataclass(frozen=True)
class Outcome:
    """A drill of one location: what was planned, each file's result, and the drill's verdict as recorded."""

    plan: Plan | None
    drill: Drill
    files: tuple[DrillFile, ...]
    why: str  # the drill's verdict in words, naming a file only when one failed (the detail adds the oversized)


class Driller:
    """Drills one location of a backup job; `run()` records the drill, `prepare()` only plans it."""

    def __init__(self, location: Drilled, where: str, other: str | None, config: DrillConfig,
                 history: BackupHistory, context: Context, cancel: threading.Event,
                 stop: Callable[[], str | None] = lambda: None):
        self.location, self.where, self.other, self.config = location, where, other, config
        self.history, self.context, self.cancel, self.stop = history, context, cancel, stop
        self.clock: Clock = context.clock
        self.salt = f"{history.job}/{where}"
        self.bytes_read = 0  # every restore's, second ones too
        self.source: object | None = None  # the live source while the drill runs (compare:)
        self._taken_at: dict[str, float] = {}  # when each listed backup was taken

    def prepare(self) -> tuple[str, Plan]:
        """The newest backup's id and the plan (a listing, no data read); raises when the location cannot be read."""
        backups = self.location.backups()
        if not backups:
            raise DrillNotRun(f"no backup to drill in {self.location.where}")
        self._taken_at = {backup.id: backup.completed_at for backup in backups}
        last = self.history.last_drill(self.where, conclusive=True)
        cursor, lap = (last.cursor_to, last.lap) if last else (-1, 0)
        return backups[0].id, plan(self.location.candidates(backups), self.salt, cursor, lap, self.config.files,
                                   self.config.max_bytes)

    def run(self, progress: Callable[[str, DrillFile], None] = lambda where, file: None) -> Outcome:
        started = self.clock.time()
        end = self.clock.monotonic() + self.config.timeout
        expired = lambda: self.clock.monotonic() > end  # noqa: E731 — one comparison, read by every Digest
        try:
            backup_id, planned = self.prepare()
        except Exception as exc:  # a listing that fails is a drill that could not run
            return self._record(started, "", None, [], f"could not drill: {describe(exc)}")
        done: list[DrillFile] = []
        source = self.source = self._source()
        stopped = ""
        try:
            for pick in planned.picks:
                stopped = (CANCELLED if self.cancel.is_set() else
                           "could not finish: the drill's time ran out" if expired() else self.stop() or "")
                if stopped:
                    break
                result = self._drill(pick, source, expired)
                if self.cancel.is_set():
                    stopped = CANCELLED  # the file in flight was cut short: it is no evidence
                    break
                done.append(result)
                progress(self.where, result)
        finally:
            if source is not None:
                source.close()
        return self._record(started, backup_id, planned, done, stopped)

    def _drill(self, pick: Pick, source: object, expired: Callable[[], bool]) -> DrillFile:
        """One file: restored, compared, and once more if it failed (the failure rule)."""
        candidate = pick.candidate
        first = self._restore_and_compare(pick, source, expired)
        if first.result not in FAILED:
            return first
        again = self._restore_and_compare(pick, source, expired)
        same = again.result == first.result and (first.result == "damaged" or again.sha256 == first.sha256)
        if same and self._still_holds(candidate.backup_id):
            return first
        return replace(first, result="unreadable", detail=f"not reproduced by a second restore or the backup is gone "
                                                          f"(first: {first.detail}; then: {again.detail})")

    def _restore_and_compare(self, pick: Pick, source: object, expired: Callable[[], bool]) -> DrillFile:
        candidate = pick.candidate
        recorded = self._recorded(candidate)
        digest = Digest(candidate, self.cancel, expired, md5=any(c.startswith("md5:") for _, c in recorded))
        file = DrillFile(candidate.path, pick.why, candidate.size, candidate.mtime, candidate.ctime, "", "",
                         "unreadable", "")
        try:
            self.location.restore(candidate, digest, self.cancel)
            digest.finish()
        except DrillDamage as exc:
            return replace(file, result="damaged", detail=str(exc))
        except DrillNotRun as exc:
            return replace(file, detail=str(exc))
        except Exception as exc:  # a location's unexpected error is no evidence of damage
            return replace(file, detail=describe(exc))
        finally:
            self.bytes_read += digest.bytes
        result, reference, detail = self._compare(candidate, digest, recorded, source)
        return replace(file, sha256=digest.sha256.hexdigest(), reference=reference, result=result, detail=detail)

    def _recorded(self, candidate: Candidate) -> list[tuple[str, str]]:
        """The checksums recorded for exactly this content: the store's or tool's, and the one vigil first saw."""
        recorded = [(candidate.reference or "sidecar", candidate.checksum)] if candidate.checksum else []
        if candidate.path == candidate.backup_id:  # the whole backup: vigil recorded its checksum when it saw it
            if first_seen := self.history.first_seen_checksum(self.where, candidate.backup_id):
                recorded.append(("first-seen", first_seen))
        return recorded

    def _compare(self, candidate: Candidate, digest: Digest, recorded: list[tuple[str, str]],
                 source: object) -> tuple[str, str, str]:
        """(result, reference, detail) against the first reference available. What the store recorded and what
        vigil first saw must both agree: a dump rewritten with its checksum file differs from the first."""
        usable = [(name, *checksum.partition(":")[::2]) for name, checksum in recorded
                  if digest.hexdigest(checksum.partition(":")[0]) is not None]
        for name, algorithm, expected in usable:
            if (got := digest.hexdigest(algorithm)) != expected.lower():
                return "mismatch", name, _differs(algorithm, got, name, expected)
        if usable:
            return "match", usable[0][0], ""
        sha256 = digest.hexdigest("sha256")
        for name, where in (("earlier-drill", self.where), ("other-location", self.other)):
            if where and (expected := self.history.drilled_sha256(where, candidate.path, candidate.size,
                                                                  candidate.mtime, candidate.ctime)):
                return ("match", name, "") if expected == sha256 else \
                    ("mismatch", name, _differs("sha256", sha256, name, expected))
        note = ""
        if source is not None:
            from checks.sources.livesource import SourceSkipped  # part of the drill only with compare:
            try:
                expected = source.sha256(candidate, backed_up_at=self._taken_at.get(candidate.backup_id))
            except SourceSkipped as exc:
                note = f"source skipped: {exc}"
            except Exception as exc:  # an unreachable source is no reference, never a failure of the backup
                note = f"source not compared: {describe(exc)}"
            else:
                return ("match", "source", "") if expected == sha256 else \
                    ("mismatch", "source", _differs("sha256", sha256, "source", expected))
        if self.location.kind in SELF_CHECKING:
            return "restored", "tool", note or "every chunk checked by the tool; no independent reference"
        return "skipped", "", note or "nothing to compare with (no checksum recorded, no earlier drill)"

    def interrupt(self) -> None:
        """From another thread (a stop, a reload, a timeout): cancel, and end a source command waiting on the host."""
        self.cancel.set()
        if (source := self.source) is not None:
            source.close()

    def _still_holds(self, backup_id: str) -> bool:
        try:
            return self.location.holds(backup_id)
        except Exception:  # a listing that fails cannot confirm the backup is still there
            return False

    def _source(self) -> object | None:
        if self.config.compare is None:
            return None
        from checks.sources.livesource import LiveSource  # part of the drill only with compare:
        try:
            return LiveSource(self.config.compare, self.context)
        except Exception as exc:  # the drill goes on with the other references
            log.warning("restore drill without the live source job=%s location=%s error=%s", self.history.job,
                        self.where, describe(exc))
            return None

    def _record(self, started: float, backup_id: str, planned: Plan | None, done: list[DrillFile],
                stopped: str) -> Outcome:
        ok, why = verdict(done, stopped)
        oversized = planned.oversized_row(self.config.max_bytes) if planned is not None else None
        detail = "; ".join(filter(None, (why, planned.oversized_note(self.config.max_bytes)))) if oversized else why
        drill = Drill(self.where, started, self.clock.time(), backup_id, ok, len(done), self.bytes_read, self.salt,
                      planned.cursor_from if planned else -1, planned.cursor_to if planned else -1,
                      planned.lap if planned else 0, planned.coverage if planned else None, detail)
        self.history.record_drill(drill, [*done, oversized] if oversized is not None else done)
        return Outcome(planned, drill, tuple(done), why)


def verdict(done: list[DrillFile], stopped: str) -> tuple[bool | None, str]:
    """A drill is failed by any failed file, ok once a file passed and none failed, else it could not drill
    (cancelled, stopped, nothing read or nothing to compare with): never ok for what was not shown."""
    failed = [f for f in done if f.result in FAILED]
    if failed:
        return False, "; ".join(f"{f.path}: {f.detail}" for f in failed)
    if stopped:
        return None, stopped
    counts = {result: sum(f.result == result for f in done) for result in RESULTS}
    summary = ", ".join(f"{count} {result}" for result, count in counts.items() if count)
    if not any(counts[result] for result in PASSED):
        return None, f"could not drill: {summary or 'no file to restore'}"
    return True, summary


def _differs(algorithm: str, got: str, reference: str, expected: str) -> str:
    return f"{algorithm} {got[:12]}… ≠ {reference} {expected.lower()[:12]}…"
