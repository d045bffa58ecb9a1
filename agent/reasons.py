"""Reasons for people: what the status page, `vigil once` and the log say went wrong.

One line, redacted, at most LIMIT characters and cut on a word with an ellipsis (the
secret is masked before the cut, so a cut never shows half of one). vigil's own errors
are written for people already: their text is the reason, without the class name. A
library's error keeps its short type where its text alone says too little
(`KeyError: 'serial'`), a builtin ValueError or TypeError is its words (a parser's
`invalid literal for int() ...`); a system error is its plain words (`Connection refused`, not
`ConnectionRefusedError: [Errno 111] ...`).
"""

from __future__ import annotations

import os

from agent import PACKAGES
from agent.redact import redact

LIMIT = 300
ELLIPSIS = "…"


def describe(exc: BaseException) -> str:
    """The exception as one line for people."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    if type(exc).__module__.partition(".")[0] in PACKAGES and text:
        return shorten(redact(text))
    if isinstance(exc, OSError) and exc.strerror:
        text = _system_words(exc) + (f": {exc.filename}" if exc.filename else "")
    elif isinstance(exc, TimeoutError) and not text:
        text = "timed out"
    elif type(exc).__module__ == "builtins" and isinstance(exc, (ValueError, TypeError)) and text:
        pass  # a parser's own words say what was wrong ("invalid literal for int() ..."); the type adds nothing
    else:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return shorten(redact(text))


def _system_words(exc: OSError) -> str:
    """The C library's words for a builtin OSError's errno (asyncio says `Connect call failed ('h', 1)`)."""
    if type(exc).__module__ == "builtins" and isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno)
    return str(exc.strerror)


def shorten(text: str, limit: int = LIMIT) -> str:
    """The text, or when longer than `limit` its start cut after a whole word, with an ellipsis."""
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    cut = text[:room + 1].rpartition(" ")[0]  # one more: a word that ends just at the room is whole
    if len(cut) <= limit // 2:  # no space, or a last word as long as half the text: cut inside it
        cut = text[:room]
    return cut.rstrip(" ,;:") + ELLIPSIS
