"""A real OpenSSH sshd on a free loopback port, with its own host key, config and authorized key.

Nothing outside the test's directory is used except /run/sshd, which sshd insists on
(as its privilege-separation directory) when it runs as root.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import Peer, free_port, need, running, wait_until

SSHD = "/usr/sbin/sshd"  # sshd refuses to run unless started by its absolute path
SESSION_MARK = "VIGIL_LAB_SSHD"  # set (to the port) in every session, so what a session started can be found
PRIVSEP_DIR = Path("/run/sshd")


@dataclass(frozen=True)
class Sshd:
    host: str
    port: int
    user: str
    key_file: Path  # the client key, authorized for `user`
    known_hosts: Path  # one line: [127.0.0.1]:PORT ssh-ed25519 ...
    fingerprint: str  # the host key's, as OpenSSH prints it: SHA256:...
    host_key: Path
    argv: tuple[str, ...] = ()  # how it was started, to start it again after `kill()`
    peer: Peer | None = None

    def kill(self) -> None:
        """Stop sshd and every connection it serves (its per-connection children), as a crash would."""
        children = self.connections()
        self.peer.stop()
        for pid in children:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def connections(self) -> list[int]:
        """The PIDs of the per-connection sshd processes, each serving one client's connection."""
        return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _parent(int(pid)) == self.peer.pid]

    def commands(self) -> list[str]:
        """What the sessions of this server started and is still running (a zombie has no environment):
        the start of each command line."""
        mark = f"{SESSION_MARK}={self.port}".encode()
        running = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    running.append(Path(f"/proc/{pid}/cmdline").read_bytes()[:40].replace(b"\0", b" ").decode())
            except OSError:  # it ended meanwhile
                continue
        return running

    def start_again(self, log: Path) -> Peer:
        """The same sshd (port, keys) started once more; the caller stops the Peer returned."""
        peer = Peer(list(self.argv), log)
        wait_until(lambda: _banner(self.port).startswith(b"SSH-2.0-"), 20, "sshd to start again")
        return peer


def make_key(path: Path) -> Path:
    """A new ed25519 key pair without a passphrase at `path` (and `path`.pub)."""
    keygen = need("ssh-keygen", "apt-get install openssh-client")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "vigil-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def fingerprint(key: Path) -> str:
    """The SHA256:... fingerprint of a key pair's public half, from ssh-keygen itself."""
    keygen = need("ssh-keygen", "apt-get install openssh-client")
    listed = subprocess.run([keygen, "-l", "-E", "sha256", "-f", f"{key}.pub"],
                            check=True, capture_output=True, text=True).stdout
    return listed.split()[1]


def known_hosts_line(port: int, host_key: Path) -> str:
    key_type, key_data = Path(f"{host_key}.pub").read_text().split()[:2]
    return f"[127.0.0.1]:{port} {key_type} {key_data}\n"


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@contextmanager
def sshd(directory: Path, path: str | None = None, private_run: tuple[str, ...] = (),
         options: str = "", without: tuple[str, ...] = ()) -> Iterator[Sshd]:
    """sshd on a free port. `path` becomes the sessions' PATH (fake tools first); `private_run`
    runs sshd in a mount namespace of its own with an empty /run holding these files and
    directories (a name ending in / is a directory), so a "server" can have systemd's
    runtime directory or a pending reboot without touching this machine's /run. `options`
    are more sshd_config lines (`UnusedConnectionTimeout 2s`). `without` are capabilities that sshd and
    every session lack (`dac_override`, `dac_read_search`: root reads only what a file's mode lets it)."""
    binary = need(SSHD, "apt-get install openssh-server")
    directory.mkdir(parents=True, exist_ok=True)
    host_key = make_key(directory / "host_ed25519")
    user_key = make_key(directory / "user_ed25519")
    authorized_keys = directory / "authorized_keys"
    authorized_keys.write_text(Path(f"{user_key}.pub").read_text())
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(f"""\
ListenAddress 127.0.0.1:{port}
HostKey {host_key}
PidFile {directory / "sshd.pid"}
AuthorizedKeysFile {authorized_keys}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel VERBOSE
Subsystem sftp internal-sftp
SetEnv {SESSION_MARK}={port}""" + (f" PATH={path}" if path else "") + "\n" + options)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(known_hosts_line(port, host_key))
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    argv = [binary, "-D", "-e", "-f", str(config)]
    if private_run:
        unshare = need("unshare", "apt-get install util-linux")
        made = " && ".join(f"mkdir -p {shlex.quote('/run/' + name)}" if name.endswith("/") else
                           f"touch {shlex.quote('/run/' + name)}" for name in ("sshd/", *private_run))
        argv = [unshare, "--mount", "--propagation", "private", "sh", "-c",
                f"mount -t tmpfs vigil-lab-run /run && {made} && exec {shlex.join(argv)}"]
    if without:
        dropped = ",".join(f"-{capability}" for capability in without)
        argv = [need("setpriv", "apt-get install util-linux"), "--bounding-set", dropped, "--", *argv]
    with running(argv, directory / "sshd.log", lambda: _banner(port).startswith(b"SSH-2.0-"), "sshd") as peer:
        yield Sshd("127.0.0.1", port, getpass.getuser(), user_key, known_hosts, fingerprint(host_key), host_key,
                   tuple(argv), peer)


def _banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        return connection.recv(64)
