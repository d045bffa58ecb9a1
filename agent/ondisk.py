"""The files and folders a config names, looked at when it loads, as `${file:}` secrets are.

A field that names something on this host's disk is typed with one of the types below; the
check walks the loaded config and looks at each. What decides error or warning:

- a key, known_hosts, CA or certificate file, or a tool given by its path, that is not there
  (or is a folder, or for a file a FIFO or a device) is an error: nothing creates it, and the
  first poll would fail or wait;
- a backup folder or local repository that is not there is a warning: a mount may be down
  while the config is checked, or the first backup may create it; until then the job says
  `unreachable`;
- something this user cannot see or read is a warning: check-config is often run by an
  administrator who cannot read the agent's keys, which the agent's own user can;
- a tool by name that is not on this PATH is a warning: the service's PATH may differ.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, SecretStr

from agent.redact import redact


@dataclass(frozen=True)
class OnDisk:
    """Marks a config field naming a file, a folder or a program that the agent reads or runs."""

    what: Literal["file", "directory", "program"]
    fix: str  # what to do when it is missing; `{path}` is filled in
    later: bool = False  # may appear after the config is written: missing is a warning
    private: bool = False  # holds a secret: open to others, or behind a link, is a warning (`exposed`)
    local: Callable[[str], str | None] | None = None  # a value that may be remote: its local path, or None


def local_repository(value: str) -> str | None:
    """The path of a local restic or borg repository; None for a remote one (`sftp:`, `s3:`, `ssh://`...)."""
    value = value.removeprefix("local:")
    return None if ":" in value else value


_OR_CORRECT = ", or correct the path"
KeyFile = Annotated[Path, OnDisk("file", "make one with `ssh-keygen -t ed25519 -N '' -f {path}` and add its .pub to "
                                         "the server's authorized_keys" + _OR_CORRECT, private=True)]
KnownHosts = Annotated[Path, OnDisk("file", "write it with `ssh-keyscan HOST > {path}` and check the keys it "
                                            "shows" + _OR_CORRECT)]
CaFile = Annotated[Path, OnDisk("file", "copy the CA's certificate (PEM) there" + _OR_CORRECT)]
CertFile = Annotated[Path, OnDisk("file", "copy there the certificate (PEM) uploaded to the app "
                                          "registration" + _OR_CORRECT)]
BackupFolder = Annotated[Path, OnDisk("directory", "correct the path if it is wrong", later=True)]
Repository = Annotated[str, OnDisk("directory", "correct the path if it is wrong", later=True,
                                   local=local_repository)]
Program = Annotated[str, OnDisk("program", "install it, or set `binary:` to where it is")]
PEM_OR_PATH = OnDisk("file", "the secret must hold the PEM key itself or the path of a PEM key file",
                     local=lambda value: None if value.lstrip().startswith("-----BEGIN") else value, private=True)


def problems(value: object, path: tuple = ()) -> Iterator[tuple[tuple, str, bool]]:
    """(field path, message, is an error) for each named file that is missing or unusable."""
    if not isinstance(value, BaseModel):
        return
    for name, info in type(value).model_fields.items():
        item, where = getattr(value, name), (*path, name)
        marker = _marker(info.metadata, info.annotation)
        if marker is not None and item is not None:
            found = _look(marker, item)
            if found is not None:
                yield where, *found
        elif isinstance(item, (tuple, list)):
            for index, member in enumerate(item):
                yield from problems(member, (*where, index))
        else:
            yield from problems(item, where)


def _marker(metadata: list, annotation: object) -> OnDisk | None:
    """The OnDisk of a field, also inside `KeyFile | None` (where pydantic keeps the Annotated whole)."""
    found = [item for item in metadata if isinstance(item, OnDisk)]
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Annotated:
            found += [item for item in typing.get_args(arg)[1:] if isinstance(item, OnDisk)]
    return found[0] if found else None


def _look(marker: OnDisk, value: object) -> tuple[str, bool] | None:
    secret = isinstance(value, SecretStr)
    text = value.get_secret_value() if secret else str(value)
    if marker.local is not None and (text := marker.local(text)) is None:
        return None
    # a secret's value is never printed, nor a secret inside a path (a folder named like the restic password)
    shown = "the file this secret names" if secret else redact(text)
    if marker.what == "program" and "/" not in text:
        if shutil.which(text) is None:
            return (f"{shown} is not on this PATH; install it, or set `binary:` to its full path (the service's "
                    "PATH may differ from this shell's)"), False
        return None
    try:
        mode = os.stat(text).st_mode
    except (FileNotFoundError, NotADirectoryError):
        if marker.later:
            return (f"{shown} does not exist (yet): the job is unreachable until it does, which is expected "
                    f"while its mount is down or before its first backup; {marker.fix}"), False
        return f"{shown} does not exist; {marker.fix.format(path=shown)}", True
    except PermissionError:
        return _unusable(shown, "read"), False
    except OSError as exc:
        return f"{shown} cannot be checked ({exc.strerror})", False
    if stat.S_ISDIR(mode) != (marker.what == "directory"):
        return (f"{shown} is a directory, not a file" if stat.S_ISDIR(mode) else
                f"{shown} is a file, not a directory"), True
    if marker.what == "file" and (kind := not_regular(mode)):
        return f"{shown} is not a regular file ({kind})", True
    if marker.what == "program":
        return None if os.access(text, os.X_OK) else (_unusable(shown, "run"), False)
    need = os.R_OK | (os.X_OK if marker.what == "directory" else 0)
    if not os.access(text, need):
        return _unusable(shown, "read"), False
    if marker.private and (exposure := exposed(text)):
        return f"{shown} {exposure}", False
    return None


def exposed(path: str) -> str | None:
    """How a file holding a secret is open to others, as the rest of a sentence naming it; None when it is not.

    ssh refuses a private key that its group or others can open; a link can be pointed by whoever controls it
    at another file, which vigil would then send to a peer as the secret."""
    try:
        if os.path.islink(path):
            return (f"is a symbolic link to {os.readlink(path)}: whoever can change the link chooses the file sent "
                    "as the secret; name the file itself")
        info = os.stat(path)
    except OSError:  # missing or unreadable: said elsewhere
        return None
    mode = stat.S_IMODE(info.st_mode)
    # Root owning a file and sharing it with the agent's group (root:vigil 0640) is how a service account is
    # given a secret; any other owner's file is judged as ssh judges a key: its group may hold anyone.
    whom = [who for who, open_ in (("its group", mode & 0o070 and info.st_uid != 0),
                                   ("everyone on this host", mode & 0o007)) if open_]
    if not whom:
        return None
    return (f"is open to {' and '.join(whom)} (mode {mode:04o}): make it the agent's alone (chmod 600, or "
            "owned by root with the agent's group and mode 0640), as ssh asks of a private key")


def not_regular(mode: int) -> str | None:
    """What a file that is not a regular file is (`a FIFO`, `a character device`); None for a regular one. Read,
    a FIFO waits for a writer and a device may never end."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _NOT_REGULAR if test(mode)), "not a file")


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _unusable(shown: str, verb: str) -> str:
    user = pwd.getpwuid(os.geteuid()).pw_name
    test = {"read": "-r", "run": "-x"}[verb]
    return (f"{shown} cannot be {verb} by this user ({user}): fine if the agent's user can (`sudo -u vigil test "
            f"{test} {shown}`); otherwise correct its owner or mode")
