"""Cheap reads of a restic or borg repository's state, to learn that it has not changed.

restic names each file under `snapshots/` by its snapshot's id, so the sorted names say
which snapshots exist: a backup, a `forget` and a `prune` each change them. borg counts
transactions: every commit writes `hints.N` and `index.N` with a larger N. Each reader
returns a short digest, or raises when the layout cannot be read (the caller then runs
the tool). Remote reads use the libraries vigil already has: paramiko for sftp and ssh,
boto3 for s3, httpx for restic's REST server.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from agent.net.paging import ListingError
from agent.net.ssh import SshEndpoint, connect

_SFTP_URL = re.compile(r"sftp://(?:(?P<user>[^@/]+)@)?(?P<host>[^/:]+)(?::(?P<port>\d+))?/(?P<path>.+)")
_SFTP_SHORT = re.compile(r"sftp:(?:(?P<user>[^@/]+)@)?(?P<host>[^/:]+):(?P<path>.+)")
_BORG_SSH = re.compile(r"ssh://(?:(?P<user>[^@/]+)@)?(?P<host>[^/:]+)(?::(?P<port>\d+))?/(?P<path>.+)")
_TRANSACTION = re.compile(r"(?:hints|index)\.(\d+)")
REST_V2 = "application/vnd.x.restic.rest.v2"


class LayoutUnreadable(Exception):
    """The repository's files could not be read cheaply: the tool lists it instead."""


def digest(names: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


class LayoutReader:
    """Reads one repository's files, keeping what it connects with between polls: an SFTP connection
    (keepalives find it dead), an S3 client (making one costs ~0.2 CPU-s), a REST client. Its own state:
    a location holds one and closes it, and nothing here touches the location."""

    def __init__(self, config, context):
        self.config, self.context = config, context  # a restic or borg location's Config; the job's Context
        self.ssh = None
        self.s3 = None
        self.rest = None

    def close(self) -> None:
        for session in (self.ssh, self.rest):
            if session is not None:
                session.close()
        self.ssh = self.rest = None

    def restic_snapshots(self) -> str:
        """The digest of the names under `snapshots/` of a local, sftp, s3 or rest repository."""
        repository: str = self.config.repository
        if repository.startswith("sftp:"):
            return digest(self._sftp_names(_SFTP_URL.fullmatch(repository) or _SFTP_SHORT.fullmatch(repository),
                                           "snapshots"))
        if repository.startswith("s3:"):
            return digest(self._s3_names(repository.removeprefix("s3:")))
        if repository.startswith("rest:"):
            return digest(self._rest_names(repository.removeprefix("rest:")))
        scheme = repository.split(":", 1)[0]
        if ":" in repository and scheme != "local" and not Path(repository).exists():
            raise LayoutUnreadable(f"no cheap listing for {scheme} repositories")
        return digest(_local_names(Path(repository.removeprefix("local:")) / "snapshots"))

    def borg_transaction(self) -> str:
        """The latest transaction (`hints.N`/`index.N`) of a local or ssh:// borg repository."""
        repository: str = self.config.repository
        if repository.startswith("ssh://"):
            names = self._sftp_names(_BORG_SSH.fullmatch(repository), "")
        elif ":" in repository.split("/", 1)[0]:
            raise LayoutUnreadable("no cheap listing for scp-style borg repositories (use ssh://)")
        else:
            names = _local_names(Path(repository))
        numbers = [int(match[1]) for name in names if (match := _TRANSACTION.fullmatch(name))]
        if not numbers:
            raise LayoutUnreadable("no hints.N or index.N in the repository")
        return f"transaction {max(numbers)}"

    def _sftp_names(self, match: re.Match | None, under: str) -> list[str]:
        """Names in a remote folder over one SSH connection, kept open between polls (keepalives find it dead)."""
        if match is None:
            raise LayoutUnreadable("cannot read the host and path of the repository")
        config = self.config
        if config.known_hosts is None:
            raise LayoutUnreadable("set known_hosts to let vigil read the repository over SFTP")
        path = match["path"]  # restic: relative to the home unless it starts with another /
        if match.re is _BORG_SSH:  # borg: absolute, or relative to the home after /./ or /~/
            path = path[2:] if path.startswith(("./", "~/")) else f"/{path}"
        folder = f"{path.rstrip('/')}/{under}" if under else path
        client = self.ssh
        if client is None or not client.get_transport() or not client.get_transport().is_active():
            endpoint = SshEndpoint(match["host"], int(match.groupdict().get("port") or 22),
                                   match["user"] or getpass.getuser(), config.key_file, None, None,
                                   config.known_hosts, None, min(config.timeout, 30.0))
            client = self.ssh = connect(endpoint)
        try:
            with client.open_sftp() as sftp:
                sftp.get_channel().settimeout(config.timeout)
                return sftp.listdir(folder)
        except OSError as exc:
            raise LayoutUnreadable(f"cannot list {folder} over SFTP: {exc}") from None

    def _s3_names(self, address: str) -> list[str]:
        """The keys under `snapshots/`, with a client made once (making one costs ~0.2 CPU-s)."""
        from checks.sources.s3 import key_names, make_client

        config = self.config
        url = urlsplit(address if "://" in address else f"https://{address}")
        bucket, _, prefix = url.path.lstrip("/").partition("/")
        if self.s3 is None:
            env = {name: value.get_secret_value() for name, value in config.env.items()}
            credentials = (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY"))
            endpoint = None if url.hostname == "s3.amazonaws.com" else f"{url.scheme}://{url.netloc}"
            self.s3 = make_client(endpoint, env.get("AWS_DEFAULT_REGION"), config.timeout, config.ca_file,
                                  credentials if all(credentials) else None, path_style=endpoint is not None)
        snapshots = f"{prefix.strip('/')}/snapshots/".lstrip("/")
        try:
            return [key.rsplit("/", 1)[-1] for key in key_names(self.s3, bucket, snapshots)]
        except ListingError as exc:
            raise LayoutUnreadable(f"the listing of {bucket}/{snapshots}: {exc}") from None

    def _rest_names(self, address: str) -> list[str]:
        """The REST server's `snapshots/` listing (protocol v2), on a client kept between polls."""
        from agent.net.http import SyncApi, json_of, raise_for_status

        config = self.config
        if self.rest is None:
            self.rest = SyncApi(address.rstrip("/") + "/", self.context, ca_file=config.ca_file,
                                timeout=config.timeout, retries=0)
        reply = json_of(raise_for_status(self.rest.request("GET", "snapshots/", api="restic-rest",
                                                           headers={"accept": REST_V2})))
        if not isinstance(reply, list):
            raise LayoutUnreadable("the REST server's snapshots/ is not a JSON list")
        return [item["name"] if isinstance(item, dict) else str(item) for item in reply]


def _local_names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError as exc:
        raise LayoutUnreadable(f"cannot list {directory}: {exc.strerror}") from None
