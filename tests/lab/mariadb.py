"""A real MariaDB (Debian's 10.11) primary on a free loopback port and a socket, with TLS from a
test PKI, a read-only monitoring user, and a replica following it by GTID.

Both run as root (`--user=root`: mariadbd refuses root unless told so explicitly), from
`--no-defaults` and flags only, so nothing of /etc/mysql is read. root logs in over the
socket (unix_socket authentication); everyone else over TCP with a password. The primary
writes a binary log from its first start, so the replica, made empty by mariadb-install-db,
replays everything from the beginning, users included: the monitoring user can log in to
either.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import Peer, client_output, free_port, need, running, wait_until
from tests.lab.pki import PKI

MARIADBD = "/usr/sbin/mariadbd"
MONITOR, MONITOR_PASSWORD = "vigil", "mariadb-lab-password"
REPLICATOR, REPLICATOR_PASSWORD = "replicator", "mariadb-lab-replication"
MAX_CONNECTIONS = 20  # small, so that a test can come near it
# what a monitoring account needs: server status and variables need nothing, replica status
# REPLICA MONITOR, binary log positions BINLOG MONITOR; no table privilege at all
SETUP = f"""
CREATE USER '{MONITOR}'@'127.0.0.1' IDENTIFIED BY '{MONITOR_PASSWORD}';
GRANT PROCESS, REPLICA MONITOR, BINLOG MONITOR ON *.* TO '{MONITOR}'@'127.0.0.1';
CREATE USER '{REPLICATOR}'@'127.0.0.1' IDENTIFIED BY '{REPLICATOR_PASSWORD}';
GRANT REPLICATION SLAVE ON *.* TO '{REPLICATOR}'@'127.0.0.1';
CREATE DATABASE lab;
CREATE TABLE lab.lab_rows (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(200) NOT NULL,
                           at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""


@dataclass(frozen=True)
class Server:
    """One mariadbd: `sql()` runs statements as root over its socket."""

    port: int
    socket: Path
    peer: Peer

    def sql(self, statements: str) -> str:
        """mariadb --batch --skip-column-names: one line per row, columns joined by tabs."""
        return self._client("--batch", "--skip-column-names", "-e", statements)

    def replica_status(self) -> dict[str, str]:
        """SHOW REPLICA STATUS as a dict (empty on a server that replicates nothing)."""
        fields = (line.strip().partition(": ") for line in self._client("--vertical", "-e", "SHOW REPLICA STATUS")
                  .splitlines() if ": " in line)
        return {name: value for name, _, value in fields}

    def _client(self, *arguments: str) -> str:
        client = need("mariadb", "run tests/lab/setup.sh (mariadb-server)")
        return client_output([client, "--no-defaults", f"--socket={self.socket}", "-u", "root", *arguments],
                             f"mariadb on port {self.port}: {arguments[-1]!r}")


@dataclass(frozen=True)
class Mariadb:
    primary: Server
    replica: Server | None
    ca: Path  # verifies the servers' certificate (for 127.0.0.1 and localhost)
    user: str = MONITOR
    password: str = MONITOR_PASSWORD

    @contextmanager
    def lagging(self, delay: int = 3600) -> Iterator[None]:
        """The replica applies each event `delay` seconds after the primary wrote it (MASTER_DELAY):
        it receives the primary's writes and Seconds_Behind_Master grows from the first one."""
        self._change_master(f"MASTER_DELAY = {delay}")
        try:
            yield
        finally:
            self._change_master("MASTER_DELAY = 0")

    @contextmanager
    def replication_stopped(self) -> Iterator[None]:
        """STOP REPLICA: neither thread runs, and Seconds_Behind_Master is NULL, not a number."""
        self.replica.sql("STOP REPLICA")
        try:
            yield
        finally:
            self.replica.sql("START REPLICA")

    def _change_master(self, setting: str) -> None:
        self.replica.sql(f"STOP REPLICA; CHANGE MASTER TO {setting}; START REPLICA")


@contextmanager
def _serve(home: Path, name: str, log: Path, pki: PKI, options: tuple[str, ...]) -> Iterator[Server]:
    """mariadbd on a new data folder `home`/`name`, once it answers on its socket."""
    binary = need(MARIADBD, "run tests/lab/setup.sh (mariadb-server)")
    install = need("mariadb-install-db", "run tests/lab/setup.sh (mariadb-server)")
    admin = need("mariadb-admin", "run tests/lab/setup.sh (mariadb-server)")
    data, sock, port = home / name, home / f"{name}.sock", free_port()
    subprocess.run([install, "--no-defaults", f"--datadir={data}", "--user=root", "--skip-test-db",
                    "--auth-root-authentication-method=socket"], check=True, capture_output=True)
    argv = [binary, "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
            "--bind-address=127.0.0.1", f"--pid-file={home / name}.pid", "--skip-name-resolve",
            f"--max-connections={MAX_CONNECTIONS}", "--innodb-buffer-pool-size=16M",
            "--innodb-flush-log-at-trx-commit=0", f"--ssl-cert={pki.server_cert}", f"--ssl-key={pki.server_key}",
            f"--ssl-ca={pki.ca}", *options]

    def answers() -> bool:
        return subprocess.run([admin, "--no-defaults", f"--socket={sock}", "-u", "root", "ping"],
                              capture_output=True, timeout=10).returncode == 0

    with running(argv, log, answers, f"MariaDB {name}") as peer:
        yield Server(port, sock, peer)


@contextmanager
def mariadb(directory: Path, pki: PKI, replica: bool = True) -> Iterator[Mariadb]:
    """A primary with TLS, a binary log and the monitoring user; with `replica`, a server
    replicating from it (read-only to everyone but replication)."""
    directory.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="vigil-mariadb-"))  # short: a socket's path has at most 107 bytes
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, home, True)
        primary = stack.enter_context(_serve(home, "primary", directory / "primary.log", pki,
                                             ("--server-id=1", "--log-bin=primary-bin", "--binlog-format=ROW")))
        primary.sql(SETUP)
        follower = None
        if replica:
            follower = stack.enter_context(_serve(home, "replica", directory / "replica.log", pki,
                                                  ("--server-id=2", "--read-only")))
            follower.sql(f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary.port}, "
                         f"MASTER_USER = '{REPLICATOR}', MASTER_PASSWORD = '{REPLICATOR_PASSWORD}', "
                         f"MASTER_USE_GTID = slave_pos; START REPLICA")
            wait_until(lambda: follower.sql("SELECT COUNT(*) FROM mysql.user WHERE user = 'vigil'") == "1", 30,
                       "the replica to catch up with the primary")
        yield Mariadb(primary, follower, pki.ca)
