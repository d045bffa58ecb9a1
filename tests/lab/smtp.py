"""A real SMTP server with STARTTLS on a free loopback port: aiosmtpd, from its own venv.

Not a Debian MTA: exim4, postfix and opensmtpd each provide and conflict with
mail-transport-agent, so installing one for the lab would remove the machine's own, and
they keep their queue and control socket at fixed paths (two tests could not run one each).
aiosmtpd is one foreground process from flags alone. It requires STARTTLS before MAIL
(as a submission server does) and prints each message it accepts to its log.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import Peer, free_port, need, running
from tests.lab.pki import PKI

AIOSMTPD = Path(__file__).resolve().parents[2] / ".lab" / "aiosmtpd" / "bin" / "aiosmtpd"


@dataclass(frozen=True)
class Smtp:
    port: int
    ca: Path  # verifies its certificate (for 127.0.0.1 and localhost)
    peer: Peer


@contextmanager
def smtp(directory: Path, pki: PKI) -> Iterator[Smtp]:
    binary = need(str(AIOSMTPD), "run tests/lab/setup.sh (aiosmtpd venv)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # -n: stay root rather than setuid nobody (who could not read the key in pytest's folder)
    argv = [binary, "-n", "-l", f"127.0.0.1:{port}", "--tlscert", str(pki.server_cert), "--tlskey", str(pki.server_key)]
    with running(argv, directory / "aiosmtpd.log", lambda: greeting(port).startswith(b"220 "), "aiosmtpd") as peer:
        yield Smtp(port, pki.ca, peer)


def greeting(port: int) -> bytes:
    """The first line a plain TCP client reads from a mail server on `port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        return connection.makefile("rb").readline()
