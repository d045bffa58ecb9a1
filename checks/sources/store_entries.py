"""What the object stores (s3, azure_blob) share: listing entries checked before they become backups, and a
download poured into a restore drill's sink.

The SDKs pass on what the server sent: an S3-compatible store or a proxy may send a size
of -5 or 2^64, no time, a time botocore cannot read. An entry without a name or time, or a
listing the SDK cannot parse, is a LocationError naming the store, not a ValueError from
inside the SDK; a size the state database cannot hold is an unknown size.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TypeVar

from agent.reasons import describe, shorten
from checks.model import BackupSnapshot, DrillNotRun, Sink
from checks.sources.cli import size_or_none
from checks.sources.filelike import LocationError

T = TypeVar("T")
# What the SDKs' parsers raise on a listing that is not the service's (botocore's int() and
# dateutil, azure's deserializer), as they read each page.
PARSE_ERRORS = (ValueError, TypeError, RuntimeError, OverflowError, AttributeError)


def parsed(where: str, pages: Iterable[T]) -> Iterator[T]:
    """The SDK's pages; one it cannot parse is a LocationError."""
    iterator = iter(pages)
    while True:
        try:
            page = next(iterator)
        except StopIteration:
            return
        except PARSE_ERRORS as exc:
            raise LocationError(f"{where}: the listing is not what the service sends ({shorten(describe(exc), 120)})"
                                ) from None
        yield page


def snapshot(where: str, name: object, modified: object, size: object, checksum: str = "") -> BackupSnapshot:
    """One entry as a backup, or a LocationError naming what is wrong with it."""
    if not isinstance(name, str) or not name:
        raise LocationError(f"{where}: the listing has an entry without a name")
    if not isinstance(modified, datetime):
        raise LocationError(f"{where}: the listing gives {name[:80]!r} no time of last change")
    return BackupSnapshot(id=name, name=name, completed_at=modified.timestamp(), size_bytes=size_or_none(size),
                          file_count=1, checksum=checksum)


def pour(chunks: Iterable[bytes], sink: Sink, cancel: threading.Event) -> None:
    """Each chunk of a download into the sink, until the last or until `cancel` is set (DrillNotRun); the
    caller closes the download either way."""
    iterator = iter(chunks)
    while not cancel.is_set():  # before each next chunk: fetching it may be a request of its own
        if (chunk := next(iterator, None)) is None:
            return
        sink.write(chunk)
    raise DrillNotRun("cancelled")


def object_key(prefix: str, name: str) -> str:
    """The key of a backup named relative to the prefix's folder (filelike.relative_name's inverse)."""
    return prefix[:prefix.rfind("/") + 1] + name
