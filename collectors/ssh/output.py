"""What the remote scripts print, checked before it is believed.

A login banner, a shell rc file that echoes, a truncated reply or another program's
output must fail the poll with a clear reason, never crash it or yield wrong figures.
"""

from __future__ import annotations

import math

MARKER = "@@vigil "
END = "end"


class OutputError(ValueError):
    """The server's reply is not what the script prints."""


class Sections:
    """`@@vigil NAME` headed sections; the last one must be `end`, or the reply was cut short."""

    def __init__(self, sections: dict[str, list[str]]):
        self._sections = sections

    @classmethod
    def parse(cls, text: str) -> Sections:
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in text.splitlines():
            if line.startswith(MARKER):
                current = sections.setdefault(line[len(MARKER):].strip(), [])
            elif current is not None:
                current.append(line)
        if not sections:
            raise OutputError(f"the reply has no vigil sections (it starts {text[:60]!r}); is /bin/sh a POSIX shell?")
        if END not in sections:
            raise OutputError("the reply was cut short (no end marker)")
        return cls(sections)

    def __contains__(self, name: str) -> bool:
        return name in self._sections

    def lines(self, name: str) -> list[str]:
        return self._sections.get(name, [])

    def text(self, name: str) -> str:
        return "\n".join(self._sections.get(name, [])).strip()


def number(value: object, where: str) -> float:
    """A number from a script's output; a localized "1,5" or "1 234,5" is read too."""
    if isinstance(value, bool):
        raise OutputError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        text = value.strip().replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
        if "," in text and text.rfind(",") > text.rfind("."):  # 1,5 or 1.234,5: the comma is the decimal
            text = text.replace(".", "").replace(",", ".")
        else:  # 1,234.5: the comma groups thousands
            text = text.replace(",", "")
        try:
            result = float(text)
        except ValueError:
            raise OutputError(f"{where}: expected a number, got {value[:40]!r}") from None
    else:
        raise OutputError(f"{where}: expected a number, got {type(value).__name__}")
    if not math.isfinite(result):
        raise OutputError(f"{where}: expected a finite number, got {value!r}")
    return result
