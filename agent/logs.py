"""Logging: one line per event with key=value context; journald-aware under systemd.

Every record is redacted on the root handler (agent.redact), whichever library logged
it: urllib3, botocore and azure-core print URLs and headers under --debug.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from agent.redact import RedactingFilter

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
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # httpx logs every request at INFO: a Meraki cycle alone would be a dozen lines a minute.
    # vigil_api_requests_total counts them; --debug shows them.
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
    # paramiko logs every connection and authentication at INFO: one ssh target, two lines a minute.
    logging.getLogger("paramiko").setLevel(logging.DEBUG if debug else logging.WARNING)


class Throttled:
    """At most one line per `every` seconds for an event a client can repeat at will
    (failed logins, refused connections), with the count of the lines left out."""

    def __init__(self, logger: logging.Logger, every: float = 10.0):
        self._logger, self._every = logger, every
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._every:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            message += f" ({suppressed} more since the last such line)"
        self._logger.warning(message, *args)
