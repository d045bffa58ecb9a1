"""Secrets by reference: `${env:NAME}`, `${file:/path}`, `${cred:name}`.

A secret is never written inline in the config; the reference is resolved when the
config loads, so a missing secret is a config error with a line number, and the value
is wrapped in SecretStr so it never reaches a log, a status page or an exception. Each
resolved value is also registered with agent.redact, which masks it in any text that
leaves the agent, should a tool or library echo it.

A `${file:}` secret is read only from a small regular file, never waiting: a FIFO would
wait for a writer and a device never end. One open to others or reached through a link
is warned of (`file_warnings`). A secret sent in a header or a protocol line (`one_line`)
must not hold a line break, which a library would refuse in a message showing it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, SecretStr

from agent import redact
from agent.ondisk import exposed, not_regular

MAX_SECRET_BYTES = 64 << 10  # a PEM key with its chain is a few KiB
_REFERENCE = re.compile(r"\$\{(env|file|cred):([^}]+)\}")


def resolve_reference(value: object) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str) or not (match := _REFERENCE.fullmatch(value.strip())):
        raise ValueError(
            "must be a secret reference: ${env:NAME}, ${file:/path} or ${cred:name} "
            "(secrets are never written inline)"
        )
    source, name = match.groups()
    if source == "env":
        secret = os.environ.get(name)
        if secret is None:
            raise ValueError(f"environment variable {name} is not set")
    elif source == "file":
        secret = _read_secret_file(Path(name), f"secret file {name}")
    else:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ValueError(
                f"${{cred:{name}}} needs systemd's LoadCredential= ($CREDENTIALS_DIRECTORY is not set; "
                "to check by hand: CREDENTIALS_DIRECTORY=/etc/vigil/credentials vigil check-config)"
            )
        if "/" in name:
            raise ValueError(f"credential name `{name}` must not contain `/`")
        secret = _read_secret_file(Path(directory) / name, f"credential {name}")
    if not secret:
        raise ValueError(f"the secret in {source}:{name} is empty")
    redact.register(secret)
    return SecretStr(secret)


def _read_secret_file(path: Path, what: str) -> str:
    """The file's text without its last line break: a small regular file only, whatever the path names. A FIFO
    would wait for a writer and a device never end, so neither is opened as a secret (O_NONBLOCK keeps a
    FIFO swapped in meanwhile from waiting too)."""
    try:
        _must_be_regular(os.stat(path).st_mode, what)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as file:
            _must_be_regular(os.fstat(descriptor).st_mode, what)
            raw = file.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"{what} does not exist") from None
    except PermissionError:
        raise ValueError(f"{what} is not readable by this user") from None
    except OSError as exc:
        raise ValueError(f"{what} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ValueError(f"{what} is larger than {MAX_SECRET_BYTES >> 10} KiB: is it the secret?")
    try:
        return raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 text") from None


def _must_be_regular(mode: int, what: str) -> None:
    if kind := not_regular(mode):
        raise ValueError(f"{what} is not a regular file ({kind}); point the reference at the file that holds "
                         "the secret")


Secret = Annotated[SecretStr, BeforeValidator(resolve_reference)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(use: str, ascii_only: bool = False) -> AfterValidator:
    """For a secret sent in `use` (an HTTP header, a line of a protocol), which cannot carry a line break: refused
    when the config loads, never handed to a library that would refuse it in a message showing it, or to a
    protocol where its second line would be a second command."""

    def check(secret: SecretStr) -> SecretStr:
        value = secret.get_secret_value()
        if _CONTROL.search(value):
            raise ValueError(f"the secret holds a line break or another control character, which {use} cannot "
                             "carry; remove it from the secret")
        if ascii_only and not value.isascii():
            raise ValueError(f"the secret holds a character outside ASCII, which {use} cannot carry")
        return secret

    return AfterValidator(check)


HeaderSecret = Annotated[Secret, one_line("an HTTP header", ascii_only=True)]


def resolve_if_reference(value: object) -> SecretStr:
    """For values that may or may not be secret (a tool's environment): resolve references,
    keep plain text as it is, and hide both alike."""
    if isinstance(value, str) and _REFERENCE.fullmatch(value.strip()):
        return resolve_reference(value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return SecretStr(str(value))
    raise ValueError("expected a text value or a secret reference")


SecretOrValue = Annotated[SecretStr, BeforeValidator(resolve_if_reference)]


def file_warnings(data: object, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(field path, message) for each `${file:}` secret in a config as written whose file is open to others or
    behind a link (agent.ondisk.exposed). `${cred:}` files are systemd's to keep."""
    if isinstance(data, str) and (match := _REFERENCE.fullmatch(data.strip())) and match[1] == "file":
        if exposure := exposed(match[2]):
            yield path, f"secret file {match[2]} {exposure}"
    elif isinstance(data, dict):
        for key, item in data.items():
            yield from file_warnings(item, (*path, key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from file_warnings(item, (*path, index))


def secret_fields(value: object, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(field path, value) of every secret in a loaded config that redaction masks."""
    if isinstance(value, SecretStr):
        if redact.registered(secret := value.get_secret_value()):
            yield path, secret
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_fields(getattr(value, name), (*path, name))
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from secret_fields(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from secret_fields(item, (*path, key))
