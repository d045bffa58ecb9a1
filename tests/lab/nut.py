"""A real NUT upsd on a free loopback port, with one `dummy-ups` driver per simulated unit.

Both run directly from /lib/nut with their own NUT_CONFPATH/NUT_STATEPATH (the /usr/sbin
wrappers exit without MODE=standalone). Each unit reads a `.dev` file; rewrite it and the
driver shows the change within about two seconds. Without a PKI upsd answers STARTTLS
with ERR FEATURE-NOT-CONFIGURED; with one, it offers TLS from an NSS database (Debian's
upsd is built with NSS, not OpenSSL: certutil/pk12util from libnss3-tools make it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.harness import Peer, free_port, need, running, wait_until
from tests.lab.pki import PKI

NUT = Path("/lib/nut")
USER, PASSWORD = "vigil", "nut-lab-password"
ON_MAINS = {
    "device.mfr": "Eaton", "device.model": "5PX 1500", "device.serial": "G123A45678",
    "ups.mfr": "Eaton", "ups.model": "5PX 1500", "ups.serial": "G123A45678", "ups.firmware": "02.14.0026",
    "ups.status": "OL CHRG", "battery.charge": "100", "battery.runtime": "2460", "battery.voltage": "27.1",
    "battery.temperature": "26.5", "ups.load": "23", "input.voltage": "231.4", "input.frequency": "50.0",
    "output.voltage": "230.0", "output.frequency": "50.0", "ups.test.result": "Done and passed",
    "ups.test.date": "2025-11-03",
}
STATES: dict[str, dict[str, str]] = {
    "online": ON_MAINS,
    "onbatt": {**ON_MAINS, "ups.status": "OB DISCHRG", "battery.charge": "64", "battery.runtime": "840",
               "input.voltage": "0.0", "input.frequency": "0"},
    "lowbatt": {**ON_MAINS, "ups.status": "OB DISCHRG LB", "battery.charge": "9", "battery.runtime": "95"},
    "replace": {**ON_MAINS, "ups.status": "OL RB", "ups.test.result": "Done and error"},
    "bypass": {**ON_MAINS, "ups.status": "OL BYPASS OVER", "ups.load": "112"},
    "alarm": {**ON_MAINS, "ups.status": "OL ALARM", "ups.alarm": "Temperature too high! Fan failure! Gremlins!"},
    "threephase": {**{k: v for k, v in ON_MAINS.items() if k not in ("input.voltage", "output.voltage")},
                   "input.L1-N.voltage": "230.1", "input.L2-N.voltage": "229.4", "input.L3-N.voltage": "231.0",
                   "output.L1-N.voltage": "230.0", "output.L2-N.voltage": "230.2", "output.L3-N.voltage": "229.9",
                   "output.L1.power.percent": "31", "output.L2.power.percent": "28", "output.L3.power.percent": "35",
                   "input.phases": "3", "output.phases": "3"},
    "flip": ON_MAINS,
}


@dataclass(frozen=True)
class Nut:
    port: int
    conf: Path
    drivers: dict[str, Peer]  # by UPS name: SIGSTOP one and upsd calls its data stale after MAXAGE
    upsd: Peer

    def target(self, ups: str, name: str | None = None, **extra) -> dict:
        os.environ["VIGIL_TEST_NUT_PASSWORD"] = PASSWORD
        return {"name": name or f"nut-{ups}", "kind": "nut", "host": "127.0.0.1", "port": self.port, "ups": ups,
                "username": USER, "password": "${env:VIGIL_TEST_NUT_PASSWORD}", **extra}

    def kill(self) -> None:
        """upsd dies, as in a crash; the drivers go on."""
        self.upsd.kill()

    def start_again(self) -> Peer:
        """The same upsd (port, config) after `kill()`, ready once it serves every unit again;
        the caller stops the Peer returned."""
        peer = self.upsd.again()
        wait_until(lambda: all(_complete(self.port, ups, {"ups.status": ""}) for ups in self.drivers), 30,
                   "upsd to start again")
        return peer

    def set_state(self, ups: str, variables: dict[str, str]) -> None:
        """Rewrite a unit's .dev file atomically; the driver re-reads it within ~2 s."""
        write_dev(self.conf / f"{ups}.dev", variables)


def write_dev(path: Path, variables: dict[str, str]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(f"{key}: {value}\n" for key, value in variables.items()))
    os.chmod(temporary, 0o644)
    temporary.replace(path)


@contextmanager
def nut(directory: Path, states: dict[str, dict[str, str]] = STATES, pki: PKI | None = None,
        maxage: int = 15) -> Iterator[Nut]:
    driver = need(str(NUT / "dummy-ups"), "run tests/lab/setup.sh (nut-server)")
    upsd = need(str(NUT / "upsd"), "run tests/lab/setup.sh (nut-server)")
    directory.mkdir(parents=True, exist_ok=True)
    # the drivers run as `nut`, which cannot enter pytest's 0700 temporary folders
    home = Path(tempfile.mkdtemp(prefix="vigil-nut-"))
    os.chmod(home, 0o755)
    conf, state = home / "conf", home / "state"
    conf.mkdir()
    state.mkdir(mode=0o770)
    shutil.chown(state, "nut", "nut")
    port = free_port()
    (conf / "nut.conf").write_text("MODE=standalone\n")
    (conf / "ups.conf").write_text("".join(f"[{ups}]\n  driver = dummy-ups\n  port = {ups}.dev\n  desc = \"lab\"\n"
                                           for ups in states))
    (conf / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {port}\nMAXAGE {maxage}\n" + (nss_db(home, pki) if pki else ""))
    (conf / "upsd.users").write_text(f"[{USER}]\n  password = {PASSWORD}\n")
    for ups, variables in states.items():
        write_dev(conf / f"{ups}.dev", variables)
    os.chmod(conf, 0o755)
    for name in ("ups.conf", "upsd.conf", "upsd.users", "nut.conf"):
        shutil.chown(conf / name, "root", "nut")
        os.chmod(conf / name, 0o640)
    env = {"NUT_CONFPATH": str(conf), "NUT_STATEPATH": str(state)}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, home, True)
        drivers = {}
        for ups in states:
            socket_path = state / f"dummy-ups-{ups}"
            drivers[ups] = stack.enter_context(running([driver, "-a", ups, "-u", "nut", "-F"], directory / f"{ups}.log",
                                        socket_path.exists, f"dummy-ups {ups}", env=env))
        server = stack.enter_context(running([upsd, "-u", "nut", "-F"], directory / "upsd.log",
                                    lambda: all(_complete(port, ups, variables) for ups, variables in states.items()),
                                    "upsd", env=env))
        yield Nut(port, conf, drivers, server)


def nss_db(home: Path, pki: PKI) -> str:
    """upsd (built with NSS here) reads its certificate from an NSS database: the upsd.conf lines for it."""
    certutil, pk12util, openssl = need("certutil", "apt install libnss3-tools"), need("pk12util"), need("openssl")
    db = home / "nss"
    db.mkdir()
    bundle = home / "upsd.p12"
    subprocess.run([openssl, "pkcs12", "-export", "-in", str(pki.server_cert), "-inkey", str(pki.server_key),
                    "-name", "upsd", "-out", str(bundle), "-passout", "pass:lab"], check=True, capture_output=True)
    for argv in ([certutil, "-N", "-d", f"sql:{db}", "--empty-password"],
                 [pk12util, "-i", str(bundle), "-d", f"sql:{db}", "-W", "lab"],
                 [certutil, "-A", "-d", f"sql:{db}", "-n", "lab-ca", "-t", "CT,,", "-i", str(pki.ca)]):
        subprocess.run(argv, check=True, capture_output=True)
    for path in (db, *db.iterdir()):
        shutil.chown(path, "nut", "nut")
    return f'CERTPATH {db}\nCERTIDENT "upsd" ""\nDISABLE_WEAK_SSL true\n'


def _complete(port: int, ups: str, variables: dict[str, str]) -> bool:
    """upsd has the driver's whole dump: the last variable of the .dev file answers."""
    last = list(variables)[-1]
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"GET VAR {ups} {last}\n".encode())
        return sock.recv(4096).startswith(b"VAR ")


@pytest.fixture(scope="session")
def nut_lab() -> Iterator[Nut]:
    """One upsd for the session; in a folder of its own (see snmpsim.py: pytest's get pruned)."""
    directory = Path(tempfile.mkdtemp(prefix="vigil-nut-logs-"))
    try:
        with nut(directory) as lab:
            yield lab
    finally:
        shutil.rmtree(directory, ignore_errors=True)

