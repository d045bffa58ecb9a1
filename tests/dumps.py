"""Backup-like files for the file-based location tests."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path


def write(path: Path, data: bytes, age: float = 0) -> Path:
    """A file last modified `age` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Hashed:
    """A restore drill's sink for tests: the bytes' sha256 and md5 and their count; `then(size)` is called after
    each write (to cancel a restore midway)."""

    def __init__(self, then=None):
        self.sha256, self.md5, self.size = hashlib.sha256(), hashlib.md5(), 0
        self._then = then

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)
        if self._then:
            self._then(self.size)
