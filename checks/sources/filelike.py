"""What file-shaped locations share: which names are backups, their order, checksums, integrity.

A local directory and an SFTP server differ only in how they list a directory and open a
file (the `Tree` protocol), so listing, checksums and verification live here once. Object
stores (s3, azure_blob) reuse the name rules and the ordering.

A backup is a regular file or a directory whose name matches the pattern. Checksum files
(`<name>.sha256`, `SHA256SUMS`) are read, never listed, and so are files still being
written (`.tmp`, `.part`, rsync's hidden `.name.XXXXXX`). Symlinks are skipped: a
`latest` link would repeat the backup it points to.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import re
import stat
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Annotated, BinaryIO, Protocol

from pydantic import AfterValidator

from agent.clock import Clock
from checks.model import BackupSnapshot, Candidate, DrillNotRun, Sink, VerifyOutcome
from checks.sources.cli import size_or_none

DIRECTORY = "directory"  # a directory backup's detail in the listing
MAX_BACKUPS = 50  # the newest ones: enough history for the checks, bounded work per poll
CHUNK = 1 << 20
SIDECAR_LIMIT = 4096  # a sidecar holds one line
MANIFEST_LIMIT = 1 << 20
SIDECAR_SUFFIXES = (".sha256", ".sha256sum")
ARCHIVE_SUFFIXES = ((".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar", "tar"), (".gz", "gz"), (".zip", "zip"))

_CHECKSUM_FILE = re.compile(r"(?i)(sha\d*|md5)sums?(\.txt)?|.+\.(sha\d+(sum)?|md5|asc|sig)")
_SHA256_MANIFEST = re.compile(r"(?i)sha256sums?(\.txt)?")
_PARTIAL_FILE = re.compile(r"(?i)\..*|.+\.(tmp|temp|part|partial|filepart)")
_SHA256_HEX = re.compile(r"\b[0-9a-fA-F]{64}\b")
_GNU_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")  # sha256sum's output
_BSD_LINE = re.compile(r"SHA256 \((?P<name>.+)\) = (?P<digest>[0-9a-fA-F]{64})")  # sha256sum --tag, BSD


class LocationError(Exception):
    """A location cannot be read; the message names it and never holds a secret."""


class ArchiveDamaged(Exception):
    """An archive's structure is broken in a way the stdlib readers do not report themselves."""


# What the stdlib readers raise on a damaged archive (a failed read is a LocationError instead).
DAMAGE = (ArchiveDamaged, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error, zipfile.BadZipFile)


def _check_name_pattern(pattern: str) -> str:
    if "/" in pattern:
        raise ValueError("the pattern matches names inside `path` and cannot contain `/`")
    return pattern


NamePattern = Annotated[str, AfterValidator(_check_name_pattern)]


@dataclass(frozen=True)
class Entry:
    """A regular file or a directory, as a listing reports it."""

    name: str
    modified: float
    size: int | None  # None: the server sent a size out of range
    is_dir: bool = False


def entry(name: str, attributes: object) -> Entry | None:
    """An Entry from stat-like attributes (os.stat_result, SFTPAttributes); None unless a file or directory."""
    mode = getattr(attributes, "st_mode", None) or 0
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return None
    return Entry(name, float(attributes.st_mtime or 0), size_or_none(attributes.st_size or 0), stat.S_ISDIR(mode))


class Tree(Protocol):
    """How a file-shaped location is read; names are relative to its root, `/`-separated."""

    where: str  # for messages: "/srv/dumps", "sftp://vigil@nas:22/backups"

    def list(self, directory: str = "") -> list[Entry]:
        """Files and directories in `directory` ("" is the root), without symlinks; raises OSError."""

    def open(self, name: str) -> BinaryIO:
        """The file for reading (seekable); raises OSError."""


class Deadline:
    """A time budget on the agent's clock: `check()` raises LocationError once it is spent."""

    def __init__(self, clock: Clock, seconds: float, what: str):
        self.seconds, self._clock, self._what = seconds, clock, what
        self._end = clock.monotonic() + seconds

    def check(self) -> None:
        if self._clock.monotonic() > self._end:
            raise LocationError(f"{self._what} took longer than {self.seconds:g}s")


def is_backup_name(name: str, pattern: str) -> bool:
    """Whether `name` matches the pattern and is not a checksum file or a file still being written."""
    base = name.rpartition("/")[2]
    return (fnmatchcase(name, pattern) and not _CHECKSUM_FILE.fullmatch(base)
            and not _PARTIAL_FILE.fullmatch(base))


def relative_name(key: str, prefix: str) -> str:
    """An object's name below the folder its prefix ends in: with prefix `nightly/db-`, `nightly/db-1` is `db-1`.

    So an off-site object keeps the name of the file it copies, whether the prefix is a
    folder (`nightly/`) or also filters names.
    """
    return key[prefix.rfind("/") + 1:]


def newest_first(snapshots: Iterable[BackupSnapshot]) -> list[BackupSnapshot]:
    """The newest MAX_BACKUPS (ties by name, for a stable order); memory stays bounded for long listings."""
    return heapq.nlargest(MAX_BACKUPS, snapshots, key=lambda snapshot: (snapshot.completed_at, snapshot.id))


def list_backups(tree: Tree, pattern: str) -> list[BackupSnapshot]:
    """The backups at the root of `tree`, newest first, with sha256 checksums where a checksum file has them."""
    entries = _list(tree, "")
    snapshots = newest_first(_snapshot(item) for item in entries if is_backup_name(item.name, pattern))
    return _with_checksums(tree, snapshots, {item.name for item in entries})


def measure(tree: Tree, snapshot: BackupSnapshot, deadline: Deadline) -> BackupSnapshot:
    """A directory backup's file count and total size: it walks the tree, so it runs once per new backup."""
    if snapshot.file_count is not None:
        return snapshot
    files, size = 0, 0
    pending = [snapshot.key or snapshot.name]
    while pending:
        deadline.check()
        directory = pending.pop()
        for item in _list(tree, directory):
            if item.is_dir:
                pending.append(f"{directory}/{item.name}")
            else:
                files = files + 1
                size = None if size is None or item.size is None else size + item.size
    return replace(snapshot, file_count=files, size_bytes=size)


def verify_newest(tree: Tree, pattern: str, deadline: Deadline) -> VerifyOutcome:
    """Check the newest backup: its sha256 against its checksum file, and its archive structure."""
    try:
        backups = list_backups(tree, pattern)
        if not backups:
            return VerifyOutcome(None, f"no backup matching {pattern} in {tree.where}")
        newest = backups[0]
        if newest.file_count != 1:
            return VerifyOutcome(None, f"{newest.name} is a directory: only single files are verified")
        archive = archive_format(newest.name)
        if not newest.checksum and archive is None:
            formats = ", ".join(dict.fromkeys(kind for _, kind in ARCHIVE_SUFFIXES))
            return VerifyOutcome(None, f"nothing to check in {newest.name}: no sha256 checksum file, "
                                       f"and not an archive vigil can test ({formats})")
        try:
            with tree.open(newest.key or newest.name) as file:
                return _check_file(_Reader(file, deadline), newest, archive)
        except OSError as exc:
            raise LocationError(f"cannot read {newest.name} in {tree.where}: {reason(exc)}") from None
    except LocationError as exc:
        return VerifyOutcome(None, str(exc))


def archive_format(name: str) -> str | None:
    lowered = name.lower()
    return next((kind for suffix, kind in ARCHIVE_SUFFIXES if lowered.endswith(suffix)), None)


def reason(exc: BaseException) -> str:
    """The readable part of an OS or socket error (strerror when there is one)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _list(tree: Tree, directory: str) -> list[Entry]:
    try:
        return tree.list(directory)
    except OSError as exc:
        where = f"{tree.where}/{printable(directory)}" if directory else tree.where
        raise LocationError(f"cannot list {where}: {reason(exc)}") from None


def printable(name: str) -> str:
    """A file name as text any sink takes (SQLite, JSON, a page): bytes that are not UTF-8, which
    listings give as surrogate escapes, become `\\xe9`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _snapshot(item: Entry) -> BackupSnapshot:
    name = printable(item.name)
    key = item.name if name != item.name else ""
    if item.is_dir:  # size and count come from measure(): walking it is not free
        return BackupSnapshot(id=name, name=name, completed_at=item.modified, detail=DIRECTORY, key=key)
    return BackupSnapshot(id=name, name=name, completed_at=item.modified, size_bytes=item.size, file_count=1, key=key)


def _with_checksums(tree: Tree, snapshots: list[BackupSnapshot], names: set[str]) -> list[BackupSnapshot]:
    """Each file's sha256 from its sidecar (`<name>.sha256`), else from a SHA256SUMS manifest beside it."""
    manifest_name = min((name for name in names if _SHA256_MANIFEST.fullmatch(name)), default=None)
    manifest = parse_manifest(_read_small(tree, manifest_name, MANIFEST_LIMIT)) if manifest_name else {}

    def digest(name: str) -> str | None:
        sidecar = next((name + suffix for suffix in SIDECAR_SUFFIXES if name + suffix in names), None)
        return parse_sidecar(_read_small(tree, sidecar, SIDECAR_LIMIT)) if sidecar else manifest.get(name)

    return [replace(snapshot, checksum=f"sha256:{found}")
            if snapshot.file_count == 1 and (found := digest(snapshot.key or snapshot.name)) else snapshot
            for snapshot in snapshots]


def parse_sidecar(text: str) -> str | None:
    """The digest in a `<name>.sha256` file: the first 64-hex-digit word, in any of the usual layouts."""
    match = _SHA256_HEX.search(text)
    return match.group().lower() if match else None


def parse_manifest(text: str) -> dict[str, str]:
    """{name: digest} from `sha256sum` output, in GNU (`digest  name`) or BSD (`SHA256 (name) = digest`) form."""
    digests = {}
    for line in text.splitlines():
        match = _GNU_LINE.fullmatch(line.strip()) or _BSD_LINE.fullmatch(line.strip())
        if match:
            digests[match["name"].removeprefix("./")] = match["digest"].lower()
    return digests


def _read_small(tree: Tree, name: str, limit: int) -> str:
    try:
        with tree.open(name) as file:
            return file.read(limit).decode("utf-8", errors="replace")
    except OSError as exc:
        raise LocationError(f"cannot read {name} in {tree.where}: {reason(exc)}") from None


class _Reader:
    """A file read through sha256 within a deadline.

    A failed read raises LocationError, so a dropped connection or a timeout means
    "could not check", never "damaged".
    """

    def __init__(self, file: BinaryIO, deadline: Deadline):
        self._file, self._deadline = file, deadline
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        self._deadline.check()
        try:
            data = self._file.read(size)
        except OSError as exc:
            raise LocationError(f"reading failed: {reason(exc)}") from None
        self.sha256.update(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True


def _check_file(reader: _Reader, snapshot: BackupSnapshot, archive: str | None) -> VerifyOutcome:
    """One front-to-back read for the checksum and a tar or gzip test; zip is tested in a second pass."""
    passed = []
    try:
        if archive in ("tar", "tar.gz", "gz"):
            _test_stream(reader, archive)
        if snapshot.checksum:
            _drain(reader)
            digest = reader.sha256.hexdigest()
            if f"sha256:{digest}" != snapshot.checksum:
                return VerifyOutcome(False, f"{snapshot.name}: sha256 is {digest}, its checksum file says "
                                            f"{snapshot.checksum.removeprefix('sha256:')}")
            passed.append("sha256 matches its checksum file")
        if archive == "zip":
            reader.seek(0)
            with zipfile.ZipFile(reader) as archive_file:
                if (bad_member := archive_file.testzip()) is not None:
                    raise ArchiveDamaged(f"bad CRC in member {bad_member}")
    except DAMAGE as exc:
        return VerifyOutcome(False, f"{snapshot.name} is damaged: {exc or type(exc).__name__}")
    except (NotImplementedError, RuntimeError) as exc:  # zip: an unsupported compression method, encryption
        return VerifyOutcome(None, f"cannot test {snapshot.name}: {exc}")
    if archive:
        passed.append(f"{archive} archive is intact")
    return VerifyOutcome(True, f"{snapshot.name}: {'; '.join(passed)}")


def _test_stream(reader: _Reader, archive: str) -> None:
    """Read a tar, tar.gz or gz archive to its end: every tar header, and gzip's CRC and length."""
    stream = gzip.GzipFile(fileobj=reader) if archive in ("tar.gz", "gz") else reader
    if archive != "gz":
        _test_tar(stream)
    _drain(stream)  # gzip checks its CRC and length only at the very end


def _test_tar(stream: object) -> None:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for _member in tar:  # streaming: each member's data is read through on the way to the next header
            pass
        # tarfile stops quietly at an unreadable header or a truncated one: after the last
        # member there must be the end-of-archive zero block, and only zeros.
        while chunk := tar.fileobj.read(CHUNK):
            if chunk.strip(b"\0"):
                raise ArchiveDamaged(f"unreadable tar header at byte {tar.offset}")
        if tar.fileobj.tell() - tar.offset < tarfile.BLOCKSIZE:
            raise ArchiveDamaged(f"truncated tar archive: no end-of-archive marker after byte {tar.offset}")


def _drain(stream: object) -> None:
    while stream.read(CHUNK):
        pass


# Restore drills (checks.drill): what a drill may restore from file-shaped locations, and how it reads one


def dump_candidate(backup: BackupSnapshot, reference: str) -> Candidate:
    """A backup that is one file or object (its size listed): restored whole, compared with its recorded checksum
    (`reference` names where that came from: sidecar, etag-md5...)."""
    return Candidate(backup.id, backup.name or backup.id, backup.size_bytes, mtime=backup.completed_at,
                     key=backup.key, checksum=backup.checksum, reference=reference if backup.checksum else "")


def candidates(tree: Tree, backups: list[BackupSnapshot], deadline: Deadline) -> Iterator[Candidate]:
    """Every listed backup: a dump (with its sidecar's or manifest's sha256), or each file of a directory backup,
    walked as `measure` does (streamed: one directory's listing at a time)."""
    for backup in backups:
        if backup.detail != DIRECTORY:
            if backup.size_bytes is not None:
                yield dump_candidate(backup, "sidecar")
            continue
        pending = [backup.key or backup.name]
        while pending:
            deadline.check()
            directory = pending.pop()
            for item in sorted(_list(tree, directory), key=lambda item: item.name):
                name = f"{directory}/{item.name}"
                if item.is_dir:
                    pending.append(name)
                elif item.size is not None:
                    path = printable(name)
                    yield Candidate(backup.id, path, item.size, mtime=item.modified, key=name if path != name else "")


def stream(tree: Tree, candidate: Candidate, sink: Sink, cancel: threading.Event, deadline: Deadline) -> None:
    """The file's bytes into the sink, a chunk at a time; an unreadable file, a spent deadline or `cancel` is
    DrillNotRun (a read that fails is no damage: only what was read is judged)."""
    name = candidate.key or candidate.path
    try:
        with tree.open(name) as file:
            while data := file.read(CHUNK):
                if cancel.is_set():
                    raise DrillNotRun("cancelled")
                deadline.check()
                sink.write(data)
    except OSError as exc:
        raise DrillNotRun(f"cannot read {candidate.path} in {tree.where}: {reason(exc)}") from None
    except LocationError as exc:
        raise DrillNotRun(str(exc)) from None


def holds(tree: Tree, pattern: str, backup_id: str) -> bool:
    """Whether the backup is still listed (read afresh)."""
    return any(backup.id == backup_id for backup in list_backups(tree, pattern))
