"""A real snmpsim (UPS-MIB and APC PowerNet recordings) on a free loopback UDP port.

snmpsim runs from its own venv (.lab/snmpsim: it needs pysmi, which must stay out of the
agent's). A data file's base name is its v2c community and its v3 context name; a
rewritten file is re-read on the next request (bump the mtime), a new file needs a restart.
Two v3 users: `vigil` (SHA + AES-128) and `vigil256` (SHA-256 + AES-256).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.harness import Peer, free_port, need, running, wait_until

ROOT = Path(__file__).resolve().parents[2]
RESPONDER = ROOT / ".lab" / "snmpsim" / "bin" / "snmpsim-command-responder"
DATA = ROOT / "tests" / "data" / "snmp"
USERS = {"vigil": ("SHA", "vigil-auth-key", "AES", "vigil-priv-key"),
         "vigil256": ("SHA256", "vigil-auth-256", "AES256", "vigil-priv-256")}


@dataclass(frozen=True)
class Snmpsim:
    port: int
    data_dir: Path
    pid: int = 0  # the responder's process, for benches that count its CPU apart from the agent's
    peer: Peer | None = None  # to kill it and start it again on its port

    def v2c(self, name: str, community: str | None = None, **extra) -> dict:
        """A `kind: ups` target for the recording `community` (its base name), v2c."""
        os.environ.setdefault("VIGIL_TEST_COMMUNITY_" + (community or name).upper().replace("-", "_"),
                              community or name)
        ref = "${env:VIGIL_TEST_COMMUNITY_" + (community or name).upper().replace("-", "_") + "}"
        return {"name": name, "kind": "ups", "host": "127.0.0.1", "port": self.port,
                "snmp": {"version": "2c", "community": ref}, **extra}

    def v3(self, name: str, context: str, user: str = "vigil", auth_key: str | None = None, **extra) -> dict:
        auth, key, priv, priv_key = USERS[user]
        os.environ[f"VIGIL_TEST_AUTH_{name.upper().replace('-', '_')}"] = auth_key or key
        os.environ[f"VIGIL_TEST_PRIV_{name.upper().replace('-', '_')}"] = priv_key
        snmp = {"version": 3, "user": user, "auth_protocol": auth.lower(),
                "auth_key": "${env:VIGIL_TEST_AUTH_" + name.upper().replace("-", "_") + "}",
                "priv_protocol": priv.lower(),
                "priv_key": "${env:VIGIL_TEST_PRIV_" + name.upper().replace("-", "_") + "}",
                "context": context}
        return {"name": name, "kind": "ups", "host": "127.0.0.1", "port": self.port, "snmp": snmp, **extra}

    def kill(self) -> None:
        """The responder dies, as in a crash."""
        self.peer.kill()

    def start_again(self) -> Peer:
        """The same responder (port, data) after `kill()`; the caller stops the Peer returned."""
        peer = self.peer.again()
        first = sorted(self.data_dir.glob("*.snmprec"))[0].stem
        wait_until(lambda: _answers(self.port, first), 60, "snmpsim to start again")
        return peer

    def rewrite(self, name: str, changes: dict[str, str]) -> None:
        """Change `oid -> type|value` lines of a recording atomically; snmpsim sees it on the next request."""
        path = self.data_dir / f"{name}.snmprec"
        lines = []
        for line in path.read_text().splitlines():
            oid = line.split("|", 1)[0]
            lines.append(f"{oid}|{changes[oid]}" if oid in changes else line)
        temporary = path.with_suffix(".tmp")
        temporary.write_text("\n".join(lines) + "\n")
        later = max(path.stat().st_mtime, time.time()) + 2  # newer than snmpsim's index of it, surely
        os.utime(temporary, (later, later))
        temporary.replace(path)


def responder() -> str:
    return need(str(RESPONDER), "run tests/lab/setup.sh (snmpsim venv)")


@contextmanager
def snmpsim(directory: Path, data: Path | None = None, users: dict = USERS) -> Iterator[Snmpsim]:
    """snmpsim serving a copy of `data` (default: the project's recordings) from `directory`."""
    binary = responder()
    data_dir = directory / "data"
    shutil.copytree(data or DATA, data_dir, dirs_exist_ok=True)
    (directory / "cache").mkdir(parents=True, exist_ok=True)
    port = free_port_udp()
    argv = [binary, f"--data-dir={data_dir}", f"--cache-dir={directory / 'cache'}",
            f"--agent-udpv4-endpoint=127.0.0.1:{port}", f"--logging-method=file:{directory / 'snmpsim.log'}"]
    for user, (auth, key, priv, priv_key) in users.items():
        argv += [f"--v3-user={user}", f"--v3-auth-proto={auth}", f"--v3-auth-key={key}",
                 f"--v3-priv-proto={priv}", f"--v3-priv-key={priv_key}"]
    first = sorted(data_dir.glob("*.snmprec"))[0].stem
    with running(argv, directory / "snmpsim.out", lambda: _answers(port, first), "snmpsim", timeout=60,
                 env={"SNMPSIM_ALLOW_ROOT": "true"}) as peer:
        yield Snmpsim(port, data_dir, peer.pid, peer)


def free_port_udp() -> int:
    import socket

    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _answers(port: int, community: str) -> bool:
    """Ready when net-snmp's snmpget reads sysObjectID (the first request also makes snmpsim index)."""
    snmpget = need("snmpget", "run tests/lab/setup.sh (Debian package snmp)")
    done = subprocess.run([snmpget, "-v2c", "-c", community, "-t", "2", "-r", "0", f"127.0.0.1:{port}",
                           "1.3.6.1.2.1.1.2.0"], capture_output=True, timeout=10)
    return done.returncode == 0


@pytest.fixture(scope="session")
def snmp_lab() -> Iterator[Snmpsim]:
    """One snmpsim for the session, with the recordings plus `flip-apc`/`flip-rfc` copies that tests rewrite.

    Its folder is its own, not pytest's: concurrent pytest runs of the same user prune each
    other's old basetemp folders, and snmpsim answers nothing once its data is gone.
    """
    directory = Path(tempfile.mkdtemp(prefix="vigil-snmpsim-"))
    data = directory / "seed"
    shutil.copytree(DATA, data)
    shutil.copy(DATA / "apc.snmprec", data / "flip-apc.snmprec")
    shutil.copy(DATA / "ups-mib.snmprec", data / "flip-rfc.snmprec")
    try:
        with snmpsim(directory, data) as lab:
            yield lab
    finally:
        shutil.rmtree(directory, ignore_errors=True)

