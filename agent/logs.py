"""Logging: one line per event with key=value context; journald-aware under systemd.

One record is one line, whatever it holds: a newline inside a message or a traceback is
written as `\\n`, so journald keeps every record whole and at its priority. Tracebacks
are shown only with --debug; otherwise a record that carries one ends with the
exception's own one-line text. Outside journald, lines start with a UTC ISO 8601 time
with its offset. `--log-format json` writes one object per line (time, level, logger,
message, and every `key=value` of the message as a field) for Loki and Elastic.

Every record is redacted on the root handler (agent.redact), whichever library logged
it: urllib3, botocore and azure-core print URLs and headers under --debug.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import sys
import threading
import time

from agent import PACKAGES
from agent.redact import RedactingFilter

# syslog priorities, which journald reads from a `<N>` prefix
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
RESERVED = ("time", "level", "logger", "message", "exception")
# the agent's own loggers (its packages, and "vigil"); every other logger is a library's
OWN_LOGGERS = ("vigil", *PACKAGES)
# key=value, the value bare or double-quoted (with \" and \\ inside)
_KEY = r'(?<![^\s(,;])([A-Za-z_][A-Za-z0-9_.]*)='
_FIELD = re.compile(_KEY + r'("(?:[^"\\]|\\.)*"|[^\s,;)]*)')
_ENDS_BARE = frozenset(" \t\n,;)")  # what may follow a bare value
_BARE = re.compile(r'[^\s,;)"\'\\]+')  # a value that reads back without quotes
_AFTER_KEY = re.compile(_KEY + r"$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and line breaks, DEL, C1
_PLACEHOLDER = re.compile(r"%[#0 +-]*\d*(?:\.\d+)?[hlL]?([diouxXeEfFgGcrsa%])")


def one_line(text: str) -> str:
    """The text with its line breaks written as \\n, every other control character but a tab as \\xNN
    (a client's escape sequence never reaches a terminal), and a backslash as \\\\, so it reads back."""
    text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def quoted(value: str, glued: bool = False) -> str:
    """A value as `fields()` reads it back: bare when it can be, else double-quoted with `\\` and `\"`
    escaped; `glued` when text follows it directly (`endpoint=%s: grant...`)."""
    if _BARE.fullmatch(value) and not glued:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fields(message: str) -> dict[str, str]:
    """The `key=value` pairs of a message, quotes removed from quoted values."""
    found = {}
    for key, value in _FIELD.findall(message):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r'\\(.)', r"\1", value[1:-1])
        found.setdefault(key, value)
    return found


def render(record: logging.LogRecord) -> str:
    """The record's message, each `key=%s` / `key=%r` value in the quoting `fields()` reads: call sites
    and the parser agree by construction, whatever a call site wrote (`%r` quotes Python's way)."""
    args = record.args
    if not isinstance(args, tuple) or not args:
        return record.getMessage()
    template, pieces, values, done = str(record.msg), [], [], 0
    for match in _PLACEHOLDER.finditer(template):
        pieces.append(template[done:match.start()])
        done = match.end()
        if match.group(1) == "%":
            pieces.append("%%")
            continue
        if len(values) == len(args):
            return record.getMessage()  # more placeholders than arguments: logging's own error
        value = args[len(values)]
        if match.group(1) in "rsa" and _AFTER_KEY.search(template, 0, match.start()):
            text = value if isinstance(value, str) else (repr(value) if match.group(1) == "r" else str(value))
            following = template[done:done + 1]
            pieces.append("%s")
            value = quoted(text, glued=bool(following) and following not in _ENDS_BARE)
        else:
            pieces.append(match.group(0))
        values.append(value)
    if len(values) != len(args):
        return record.getMessage()
    return ("".join(pieces) + template[done:]) % tuple(values)


def _rendered(record: logging.LogRecord) -> bool:
    """A handler filter, before redaction: the message rendered once, its values quoted (render)."""
    record.msg, record.args = render(record), None
    return True


class _Base(logging.Formatter):
    def __init__(self, tracebacks: bool, journal: bool):
        super().__init__()
        self.tracebacks, self.journal = tracebacks, journal

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (stdlib)
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        return moment.isoformat(timespec="seconds")

    def problem(self, record: logging.LogRecord) -> str | None:
        """The traceback under --debug, else the exception's one-line text."""
        if self.tracebacks:
            text = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
            return "\n".join(filter(None, (text, record.stack_info))) or None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None

    def prefix(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITIES.get(record.levelno, 6)}>" if self.journal else ""


class TextFormatter(_Base):
    """`TIME LEVEL logger: message` (no time and a `<N>` priority under journald)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if (problem := self.problem(record)) is not None:
            text += f"\n{problem}" if self.tracebacks else f" error={json.dumps(problem, ensure_ascii=False)}"
        head = f"{record.name}: " if self.journal else f"{self.formatTime(record)} {record.levelname} {record.name}: "
        return self.prefix(record) + head + one_line(text)


class JsonFormatter(_Base):
    """One JSON object per line; json.dumps escapes every control character itself."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        document = {"time": self.formatTime(record), "level": record.levelname.lower(), "logger": record.name,
                    "message": message}
        document.update((key, value) for key, value in fields(message).items() if key not in RESERVED)
        if (problem := self.problem(record)) is not None:
            document["exception"] = problem
        return self.prefix(record) + json.dumps(document, ensure_ascii=False)



def under_journal() -> bool:
    """True when stderr is the journal stream systemd handed us."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return bool(stream) and f"{stat.st_dev}:{stat.st_ino}" == f"{device}:{inode}"


def setup(debug: bool = False, level: str | None = None, form: str = "text") -> None:
    """Log to stderr: `level` defaults to debug with --debug, else info; tracebacks only with --debug."""
    level = level or ("debug" if debug else "info")
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter if form == "json" else TextFormatter
    handler.setFormatter(formatter(tracebacks=debug, journal=under_journal()))
    handler.addFilter(_rendered)
    handler.addFilter(RedactingFilter())
    if level != "debug":
        handler.addFilter(_paramiko_errors)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries log at INFO what the agent says better once: httpx and the Azure SDK every request
    # (azure-core's over many lines), paramiko every login. Every logger but the agent's own keeps
    # the root's level, WARNING at least, unless --log-level debug; the agent's own take `level`.
    chosen = logging.getLevelName(level.upper())
    root.setLevel(chosen if level == "debug" else max(chosen, logging.WARNING))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(chosen)


def _paramiko_errors(record: logging.LogRecord) -> bool:
    """False for paramiko's ERROR records: its transport thread logs every failure it hands back
    (a banner that never came, a reset) at ERROR and then its traceback one record per line,
    while vigil reports that same exception in one line of its own. --debug keeps them."""
    return not (record.name.startswith("paramiko") and record.levelno >= logging.ERROR)


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
