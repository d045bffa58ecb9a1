"""`vigil web hash-password`: the bcrypt hash that web_config's basic_auth_users wants.

So that no one needs apache2-utils' htpasswd, or types a password on a command line
where `ps` and the shell's history would keep it.
"""

from __future__ import annotations

import getpass
from typing import TextIO

import bcrypt

COST = 10  # bcrypt's work factor: about 60 ms a check (exporters.webauth.BasicAuth remembers outcomes)
MAX_BYTES = 72  # bcrypt ignores what follows; a longer password is refused, not silently cut


def read_password(stdin: TextIO) -> str:
    """Asked twice without echo on a terminal; else the first line of stdin (for scripts)."""
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ValueError("the two passwords differ; nothing was printed")
    else:
        password = stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise ValueError("the password is empty")
    if len(password.encode()) > MAX_BYTES:
        raise ValueError(f"the password is longer than bcrypt's {MAX_BYTES} bytes")
    return password


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=COST)).decode()
