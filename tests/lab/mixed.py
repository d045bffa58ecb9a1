"""Many jobs of every kind against one set of lab peers: the config of the load tests and benches.

`MixedLab.config(count, ...)` deals `count` jobs round the kinds (host, ssh, ups over
snmpsim, nut, vmware on vcsim, meraki and m365 on their fakes, restic, borg and files
backups), each under a name of its own, all against the same few peers: the agent does
the work of `count` targets while the lab stays one process per peer. `start_mixed_lab`
starts every peer a bench needs; the tests lend it their session's sshd, snmpsim and upsd.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.fakes.graph import GraphFake
from tests.fakes.meraki import MerakiFake, make_org
from tests.lab.backup_tools import PASSWORD, BorgRepo, ResticRepo
from tests.lab.nut import Nut, nut
from tests.lab.pki import make_pki
from tests.lab.snmpsim import Snmpsim, snmpsim
from tests.lab.sshd import Sshd, sshd
from tests.lab.vcsim import PASSWORD as VCENTER_PASSWORD
from tests.lab.vcsim import Vcsim, start_vcsim

KINDS = ("host", "ssh", "ups", "nut", "vmware", "meraki", "m365", "restic", "borg", "files")
BACKUP_KINDS = ("restic", "borg", "files")
RECORDINGS = ("rfc1628-3phase", "apc", "apc-3phase", "ups-mib")  # snmpsim's UPS recordings
NUT_UNITS = ("online", "onbatt", "replace", "threephase")
MERAKI_ORGS = 50  # one organization per meraki target (each has its own 10 requests/s) up to this many
MERAKI_KEY = "mixed-lab-key"
# the tenant of tests/kinds/m365/fixtures.py; a client secret, so a bench needs no certificate
TENANT, CLIENT_ID, CLIENT_SECRET = ("7d6f2c1e-52a4-4f0e-9b1c-3a5e8d9f0a11", "0e1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
                                    "fake~client~secret")


@dataclass
class MixedLab:
    directory: Path  # secrets and backup data live here
    ssh: Sshd
    snmp: Snmpsim
    nut: Nut
    vcsim: Vcsim
    meraki: MerakiFake
    meraki_ca: Path
    graph: GraphFake
    graph_ca: Path
    restic: ResticRepo
    borg: BorgRepo
    files: Path

    def __post_init__(self) -> None:
        (self.directory / "meraki-key").write_text(MERAKI_KEY + "\n")
        (self.directory / "m365-secret").write_text(CLIENT_SECRET + "\n")
        # the agent is a child process: what the config's ${env:...} references name
        os.environ.update(VIGIL_TEST_VCENTER_PASSWORD=VCENTER_PASSWORD, VIGIL_TEST_RESTIC=PASSWORD)

    def jobs(self, count: int) -> list[tuple[str, str]]:
        """(kind, name) of the `count` jobs, dealt round the kinds."""
        dealt = [(KINDS[index % len(KINDS)], index // len(KINDS)) for index in range(count)]
        return [(kind, f"{kind}-{nth:03d}") for kind, nth in dealt]

    def config(self, count: int, interval: float, listen: str, state_dir: Path, workers: int = 16) -> str:
        """A config of `count` jobs collecting every `interval` seconds (timeouts 90% of it)."""
        timeout = round(interval * 0.9, 3)
        targets, backups = [], []
        for index, (kind, name) in enumerate(self.jobs(count)):
            if kind in BACKUP_KINDS:
                backups.append({"name": name, "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
                                "primary": self._location(kind), "interval": f"{interval}s",
                                "timeout": f"{timeout}s"})
            else:
                targets.append({**self._target(kind, index // len(KINDS)), "name": name})
        return yaml.safe_dump({"listen": listen, "state_dir": str(state_dir), "workers": workers,
                               "defaults": {"interval": f"{interval}s", "timeout": f"{timeout}s"},
                               "targets": targets, "backups": backups}, sort_keys=False)

    def _target(self, kind: str, nth: int) -> dict:
        if kind == "host":
            return {"kind": "host"}
        if kind == "ssh":
            return {"kind": "ssh", "host": self.ssh.host, "port": self.ssh.port, "user": self.ssh.user,
                    "key_file": str(self.ssh.key_file), "known_hosts": str(self.ssh.known_hosts)}
        if kind == "ups":
            return self.snmp.v2c(RECORDINGS[nth % len(RECORDINGS)])
        if kind == "nut":
            return self.nut.target(NUT_UNITS[nth % len(NUT_UNITS)])
        if kind == "vmware":
            return self.vcsim.target()
        if kind == "meraki":
            return {"kind": "meraki", "api_key": f"${{file:{self.directory / 'meraki-key'}}}",
                    "base_url": self.meraki.url, "ca_file": str(self.meraki_ca),
                    "organizations": [meraki_org_id(nth % MERAKI_ORGS)]}
        return {"kind": "m365", "tenant_id": TENANT, "client_id": CLIENT_ID, "authority": self.graph.url,
                "graph_url": self.graph.url, "ca_file": str(self.graph_ca),
                "client_secret": f"${{file:{self.directory / 'm365-secret'}}}"}

    def _location(self, kind: str) -> dict:
        if kind == "restic":
            return {"kind": "restic", "repository": self.restic.repository, "password": "${env:VIGIL_TEST_RESTIC}",
                    "env": {"RESTIC_CACHE_DIR": str(self.directory / "agent-restic-cache")}}
        if kind == "borg":
            return {"kind": "borg", "repository": self.borg.repository, "passphrase": "${env:VIGIL_TEST_RESTIC}"}
        return {"kind": "files", "path": str(self.files), "pattern": "db-*.sql.gz"}


def meraki_org_id(index: int) -> str:
    return str(700000 + index)


def meraki_fake(pki) -> MerakiFake:
    """MERAKI_ORGS small organizations, all seen by MERAKI_KEY."""
    orgs = [make_org(meraki_org_id(i), f"Mixed {i}", networks=2, devices=10) for i in range(MERAKI_ORGS)]
    return MerakiFake(pki, orgs, keys={MERAKI_KEY: [org.id for org in orgs]})


def backups(directory: Path) -> tuple[ResticRepo, BorgRepo, Path]:
    """A restic and a borg repository with one backup each, and a folder of dumps."""
    restic = ResticRepo(directory)
    restic.backup()
    borg = BorgRepo(directory)
    borg.create("nightly-1")
    files = directory / "dumps"
    files.mkdir(exist_ok=True)
    (files / "db-1.sql.gz").write_bytes(b"\x1f\x8b" + b"z" * 1000)
    return restic, borg, files


@contextmanager
def start_mixed_lab(directory: Path, ssh: Sshd | None = None, snmp: Snmpsim | None = None,
                    ups: Nut | None = None) -> Iterator[MixedLab]:
    """A MixedLab, starting every peer not given (a bench's sshd runs as this user, without fake tools)."""
    with ExitStack() as stack:
        ssh = ssh or stack.enter_context(sshd(directory / "sshd"))
        snmp = snmp or stack.enter_context(snmpsim(directory / "snmpsim"))
        ups = ups or stack.enter_context(nut(directory / "nut"))
        vcsim = stack.enter_context(start_vcsim(directory / "vcsim"))
        meraki_pki, graph_pki = make_pki(directory / "meraki-pki"), make_pki(directory / "graph-pki")
        meraki = stack.enter_context(meraki_fake(meraki_pki))
        graph = stack.enter_context(GraphFake(graph_pki, tenant=TENANT, client_id=CLIENT_ID,
                                              client_secret=CLIENT_SECRET))
        yield MixedLab(directory, ssh, snmp, ups, vcsim, meraki, meraki_pki.ca, graph, graph_pki.ca,
                       *backups(directory))
