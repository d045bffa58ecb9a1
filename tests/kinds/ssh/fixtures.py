"""The ssh collector's fixtures: a real sshd standing in for a Linux server and a Windows one.

The "server" is this machine seen through the lab sshd, run in a mount namespace with a
/run of its own (systemd's runtime directory and a pending reboot, as on a Debian server)
and a PATH whose first directory holds fake `systemctl` (two failed units), `timedatectl`
(synchronised) and `powershell` (prints a recorded Windows reply), so the real scripts
and the real parsing run over a real SSH connection.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.lab.sshd import Sshd, sshd

FIXTURES = Path(__file__).parent / "data"  # recorded Windows replies
FAKE_TOOLS = {
    "systemctl": "#!/bin/sh\n"
                 "case \"$*\" in *--state=failed*) ;; *) exit 1 ;; esac\n"
                 "echo 'backup.service loaded failed failed Nightly backup'\n"
                 "echo 'certbot.service loaded failed failed Certbot renew'\n",
    "timedatectl": "#!/bin/sh\n[ \"$*\" = 'show -p NTPSynchronized --value' ] && echo yes\n",
    # The Windows reply of the fixture named in $VIGIL_FAKE_WINDOWS (default windows-2022), and
    # the command line, kept for tests that check what was sent.
    "powershell": "#!/bin/sh\n"
                  "printf '%s\\n' \"$*\" > \"$(dirname \"$0\")/powershell.args\"\n"
                  "cat \"$(dirname \"$0\")/reply.json\"\n",
}


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory) -> Sshd:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("the lab server needs root for its own /run (a mount namespace)")
    directory = tmp_path_factory.mktemp("ssh-server")
    tools = directory / "bin"
    tools.mkdir()
    for name, text in FAKE_TOOLS.items():
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    windows_reply(tools, "windows-2022")
    with sshd(directory, path=f"{tools}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
              private_run=("systemd/system/", "reboot-required")) as server:
        yield server


def windows_reply(tools: Path, fixture: str) -> None:
    """What the fake powershell prints from now on."""
    (tools / "reply.json").write_text((FIXTURES / f"{fixture}.json").read_text())


def ssh_target(server: Sshd, **changes) -> dict:
    return {"name": "fs1", "kind": "ssh", "host": server.host, "port": server.port, "user": server.user,
            "key_file": str(server.key_file), "known_hosts": str(server.known_hosts), **changes}


@pytest.fixture
def ssh_conformance(ssh_server):
    """Two targets: a Linux server and a Windows one; together they show every family the kind declares.

    A list, because no one server has both Linux's load averages and Windows' services:
    collector_kit.collect runs each, and the conformance rule applies to what they emit together.
    """
    windows_reply(ssh_server.key_file.parent / "bin", "windows-2022")
    return [ssh_target(ssh_server, name="linux-1"), ssh_target(ssh_server, name="windows-1", os="windows")]
