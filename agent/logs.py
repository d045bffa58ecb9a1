"""Logging: one line per event with key=value context; journald-aware under systemd."""

from __future__ import annotations

import logging
import os
import sys

# syslog priorities, which journald reads from a `<N>` prefix
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """No timestamp (journald adds one); the priority as a `<N>` prefix."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITIES.get(record.levelno, 6)}>{super().format(record)}"


def under_journal() -> bool:
    """True when stderr is the journal stream systemd handed us."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return bool(stream) and f"{stat.st_dev}:{stat.st_ino}" == f"{device}:{inode}"


def setup(debug: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if under_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # httpx logs every request at INFO: a Meraki cycle alone would be a dozen lines a minute.
    # vigil_api_requests_total counts them; --debug shows them.
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
