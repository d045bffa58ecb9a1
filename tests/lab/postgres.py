"""A real PostgreSQL 15 primary on a free loopback port, with TLS from a test PKI, a read-only
monitoring role, and a streaming replica made by pg_basebackup -R.

initdb and postgres refuse to run as root, even on a directory chown'd to root: both run as
the `postgres` user (setpriv, which execs, so the PID stopped is the server's own), on data
in a 0755 folder of their own outside pytest's 0700 one. The superuser `postgres` logs in
over the Unix socket without a password (trust, socket only); everyone else over TCP with a
password (scram-sha-256), in TLS or not. Stopping sends SIGINT (a fast shutdown: the default
smart one waits for every client to leave).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import Peer, client_output, free_port, need, running, wait_until
from tests.lab.pki import PKI

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"
MONITOR, MONITOR_PASSWORD = "vigil", "pg-lab-password"  # pg_monitor, read-only by default
REPLICATOR, REPLICATOR_PASSWORD = "replicator", "pg-lab-replication"
MAX_CONNECTIONS = 20  # small, so that a test can come near it
CONFIG = f"""
listen_addresses = '127.0.0.1'
max_connections = {MAX_CONNECTIONS}
shared_buffers = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = on
ssl_cert_file = 'server.pem'
ssl_key_file = 'server.key'
hot_standby = on
wal_receiver_status_interval = 1s
"""
HBA = f"""
local all {SUPERUSER} trust
local replication {SUPERUSER} trust
host all {MONITOR} 127.0.0.1/32 scram-sha-256
host replication {REPLICATOR} 127.0.0.1/32 scram-sha-256
"""
SETUP = f"""
CREATE ROLE {MONITOR} LOGIN PASSWORD '{MONITOR_PASSWORD}' IN ROLE pg_monitor;
ALTER ROLE {MONITOR} SET default_transaction_read_only = on;
CREATE ROLE {REPLICATOR} LOGIN REPLICATION PASSWORD '{REPLICATOR_PASSWORD}';
CREATE TABLE lab_rows (id serial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now());
"""


@dataclass(frozen=True)
class Server:
    """One postgres: `sql()` runs a query as the superuser over the socket."""

    port: int
    socket_dir: Path
    data: Path
    peer: Peer

    def sql(self, query: str) -> str:
        """psql -At: one line per row, columns joined by |; a failed query fails the test's call."""
        return client_output([str(BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER,
                              "-d", "postgres", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", query],
                             f"psql on port {self.port}: {query!r}")


@dataclass(frozen=True)
class Postgres:
    primary: Server
    replica: Server | None
    ca: Path  # verifies the servers' certificate (for 127.0.0.1 and localhost)
    user: str = MONITOR
    password: str = MONITOR_PASSWORD

    @contextmanager
    def replay_paused(self) -> Iterator[None]:
        """The replica receives WAL but applies none: its data and pg_last_xact_replay_timestamp()
        stand still and the primary's replay_lag grows while the primary is written to."""
        self.replica.sql("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            self.replica.sql("SELECT pg_wal_replay_resume()")


def _as_postgres(*argv: str) -> list[str]:
    setpriv = need("setpriv", "apt-get install util-linux")
    return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


@contextmanager
def _serve(data: Path, port: int, socket_dir: Path, log: Path, what: str) -> Iterator[Server]:
    """postgres on `data`, once it accepts connections; a fast shutdown at the end."""
    argv = _as_postgres(str(BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(socket_dir))

    def accepting() -> bool:
        return subprocess.run([str(BIN / "pg_isready"), "-q", "-h", str(socket_dir), "-p", str(port),
                               "-U", SUPERUSER, "-d", "postgres"],
                              timeout=10).returncode == 0

    with running(argv, log, accepting, what) as peer:
        try:
            yield Server(port, socket_dir, data, peer)
        finally:
            peer.signal(signal.SIGINT)


@contextmanager
def postgres(directory: Path, pki: PKI, replica: bool = True) -> Iterator[Postgres]:
    """A primary with TLS and the monitoring role; with `replica`, a hot standby streaming from it."""
    need(str(BIN / "postgres"), "run tests/lab/setup.sh (postgresql-15)")
    directory.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="vigil-postgres-"))  # postgres cannot enter pytest's 0700 folders
    os.chmod(home, 0o755)
    shutil.chown(home, "postgres", "postgres")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, home, True)
        primary_data = home / "primary"
        subprocess.run(_as_postgres(str(BIN / "initdb"), "-D", str(primary_data), "-U", SUPERUSER, "-A", "trust",
                                    "--no-sync", "-E", "UTF8", "--locale=C"), check=True, capture_output=True)
        with (primary_data / "postgresql.conf").open("a") as conf:
            conf.write(CONFIG)
        (primary_data / "pg_hba.conf").write_text(HBA)
        for source, name in ((pki.server_cert, "server.pem"), (pki.server_key, "server.key")):
            shutil.copy(source, primary_data / name)
            shutil.chown(primary_data / name, "postgres", "postgres")
            os.chmod(primary_data / name, 0o600)
        primary = stack.enter_context(_serve(primary_data, free_port(), home, directory / "primary.log",
                                             "PostgreSQL primary"))
        primary.sql(SETUP)
        standby = None
        if replica:
            replica_data = home / "replica"
            subprocess.run(_as_postgres(str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                                        "-U", REPLICATOR, "-D", str(replica_data), "-R", "-X", "stream",
                                        "--no-sync", "--checkpoint=fast"),
                           check=True, capture_output=True, env={**os.environ, "PGPASSWORD": REPLICATOR_PASSWORD})
            standby = stack.enter_context(_serve(replica_data, free_port(), home, directory / "replica.log",
                                                 "PostgreSQL replica"))
            wait_until(lambda: standby.sql("SELECT status FROM pg_stat_wal_receiver") == "streaming", 30,
                       "the replica to stream from the primary")
        yield Postgres(primary, standby, pki.ca)
