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
