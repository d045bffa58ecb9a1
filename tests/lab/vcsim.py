"""vcsim: govmomi's vCenter simulator, built by tests/lab/setup.sh, on a free loopback port with TLS."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.harness import Peer, free_port, need, running, wait_until
from tests.lab.pki import PKI, make_pki

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".lab" / "vcsim" / "vcsim"
USER, PASSWORD = "monitor@vsphere.local", "s3cret-vc"
# The default inventory: 1 datacenter, 1 cluster of 3 hosts, 1 standalone host, 2 VMs per
# resource pool (4 in all), 1 datastore; one host disconnected, a red alarm on another.
SMALL = ("-dc", "1", "-cluster", "1", "-host", "3", "-standalone-host", "1", "-vm", "2", "-ds", "1")


@dataclass
class Vcsim:
    port: int
    pki: PKI
    peer: Peer

    def target(self, **extra: object) -> dict:
        """A `kind: vmware` target mapping for this simulator (password through the environment)."""
        return {"name": "vc", "kind": "vmware", "host": "127.0.0.1", "port": self.port, "user": USER,
                "password": "${env:VIGIL_TEST_VCENTER_PASSWORD}", "ca_file": str(self.pki.ca), **extra}

    def kill(self) -> None:
        """vcsim dies, as in a crash (a vCenter restart: its sessions are forgotten)."""
        self.peer.kill()

    def start_again(self) -> Peer:
        """The same simulator (port, certificate, inventory) after `kill()`; the caller stops the
        Peer returned."""
        peer = self.peer.again()
        wait_until(lambda: _answers(self.port, self.pki.ca), 60, "vcsim to start again")
        return peer

    def connect(self):
        """A pyvmomi session of the test's own, to change the inventory as an administrator would."""
        from pyVim.connect import SmartConnect

        return SmartConnect(host="127.0.0.1", port=self.port, user=USER, pwd=PASSWORD,
                            sslContext=ssl.create_default_context(cafile=str(self.pki.ca)))


def _answers(port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/about", context=context, timeout=2) as response:
        return response.status == 200


def vcsim_binary() -> str:
    return need(str(BINARY), "run tests/lab/setup.sh: it builds vcsim")


@contextmanager
def start_vcsim(directory: Path, *args: str, port: int | None = None, pki: PKI | None = None,
                timeout: float = 60) -> Iterator[Vcsim]:
    """Start vcsim (the SMALL inventory unless `args` say), wait until it answers over TLS."""
    binary = vcsim_binary()
    directory.mkdir(parents=True, exist_ok=True)
    pki = pki or make_pki(directory / "pki")
    port = port or free_port()
    argv = [binary, "-addr", f"127.0.0.1:{port}", "-cert", str(pki.server_cert), "-key", str(pki.server_key),
            "-username", USER, "-password", PASSWORD, *(args or SMALL)]
    # vcsim keeps each datastore's files in a temporary directory: here, not in /tmp,
    # so a vcsim killed before it cleaned up (a big inventory) leaves nothing behind
    with running(argv, directory / f"vcsim-{port}.log", lambda: _answers(port, pki.ca), "vcsim",
                 timeout=timeout, env={"TMPDIR": str(directory)}) as peer:
        yield Vcsim(port, pki, peer)


@pytest.fixture
def vcsim_env(monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_VCENTER_PASSWORD", PASSWORD)


@pytest.fixture
def vcsim(tmp_path, vcsim_env) -> Iterator[Vcsim]:
    """The SMALL inventory with DC0_C0_H1 disconnected and a red alarm on DC0_C0_H2."""
    with start_vcsim(tmp_path, *SMALL, "-disconnect", "DC0_C0_H1", "-alarm", "DC0_C0_H2=red") as sim:
        yield sim


def find(si, kind: type, name: str):
    """The managed object of a kind by its name."""
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [kind], True)
    try:
        return next(obj for obj in view.view if obj.name == name)
    finally:
        view.Destroy()


def snapshot(si, vm_name: str, name: str = "vigil-test") -> None:
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    WaitForTask(find(si, vim.VirtualMachine, vm_name).CreateSnapshot_Task(
        name=name, description="left behind by a backup run", memory=False, quiesce=False))

