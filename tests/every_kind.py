"""One lab with a job of every kind, for tests that stop or reload a real agent many times.

Every target kind (host, ssh, ups, nut, vmware, meraki, m365, http, tcp, dns, icmp, postgres, mysql) and
backup jobs on every location kind (restic local and over REST, borg, files, SFTP, S3, Azure Blob, Veeam),
each against its real peer or contract fake, started once for a module: `every_kind()`
gives the peers and `Lab.config()` a config that uses them all, with short intervals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.fakes.graph import GraphFake
from tests.fakes.meraki import MerakiFake, make_org
from tests.fakes.veeam import VeeamFake
from tests.kinds.m365.fixtures import CLIENT_ID, SECRET, TENANT
from tests.kinds.meraki.fixtures import KEY
from tests.kinds.probes.fixtures import db_target
from tests.kinds.ssh.fixtures import ssh_target
from tests.lab.azurite import azurite
from tests.lab.backup_tools import PASSWORD, BorgRepo, ResticRepo
from tests.lab.dnsmasq import Dnsmasq, dnsmasq
from tests.lab.moto import moto
from tests.lab.pki import PKI, make_pki
from tests.lab.rest_server import rest_server
from tests.lab.vcsim import PASSWORD as VCENTER_PASSWORD
from tests.lab.vcsim import start_vcsim

VEEAM_PASSWORD = "veeam-every-kind"  # noqa: S105 — the fake's own, for this lab only
FAST = {"interval": "3s", "timeout": "2500ms"}
SLOW = {"interval": "5s", "timeout": "4s"}  # ssh's inventory, first restic and borg calls under load
DUE = {"schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h", **SLOW}


@dataclass
class Lab:
    targets: list[dict]
    backups: list[dict]
    env: dict[str, str] = field(default_factory=dict)  # the secrets the config refers to

    def config(self, state: Path, port: int, **top: object) -> str:
        """The agent's YAML: every target and backup job, the state in `state`."""
        return yaml.safe_dump({"listen": f"127.0.0.1:{port}", "state_dir": str(state), **top,
                               "targets": self.targets, "backups": self.backups}, sort_keys=False)

    @property
    def jobs(self) -> list[str]:
        return [job["name"] for job in self.targets + self.backups]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, ssh_server, snmp_lab, nut_lab, meraki_pki, graph_pki, app_certificate,
        nginx, pg_lab, maria_lab) -> Iterator[Lab]:
    """The lab, for one test module (import it there as a fixture)."""
    with every_kind(tmp_path_factory.mktemp("every-kind"), ssh_server, snmp_lab, nut_lab, meraki_pki, graph_pki,
                    app_certificate, nginx) as peers:
        peers.targets += _databases(pg_lab, maria_lab)
        peers.env.update({"VIGIL_TEST_PG_PASSWORD": pg_lab.password, "VIGIL_TEST_MARIADB_PASSWORD": maria_lab.password})
        yield peers


@contextmanager
def every_kind(directory: Path, ssh_server, snmp_lab, nut_lab, meraki_pki: PKI, graph_pki: PKI,
               app_certificate: tuple[Path, Path], nginx) -> Iterator[Lab]:
    """Start the peers the session fixtures do not share, fill the backup locations, yield the lab."""
    with ExitStack() as stack:
        pki = make_pki(directory / "pki")
        vcenter = stack.enter_context(start_vcsim(directory / "vcsim", pki=pki))
        meraki = stack.enter_context(MerakiFake(meraki_pki, [make_org("549236", "Every kind", networks=2,
                                                                      devices=6)], rate=100, burst=100))
        graph = stack.enter_context(GraphFake(graph_pki, tenant=TENANT, client_id=CLIENT_ID, client_secret=SECRET,
                                              certificate=app_certificate[0].read_bytes()))
        veeam = stack.enter_context(VeeamFake(pki, password=VEEAM_PASSWORD))
        s3 = stack.enter_context(moto(directory / "moto", pki))
        blob = stack.enter_context(azurite(directory / "azurite", pki))
        rest = stack.enter_context(rest_server(directory / "rest"))
        resolver = stack.enter_context(dnsmasq(directory / "dnsmasq"))
        secrets = directory / "secrets"
        secrets.mkdir()
        (secrets / "meraki").write_text(KEY + "\n")
        (secrets / "graph-key").write_bytes(app_certificate[1].read_bytes())
        yield Lab(targets=_targets(ssh_server, snmp_lab, nut_lab, vcenter, meraki, meraki_pki, graph, graph_pki,
                                   app_certificate[0], secrets) + _probes(nginx) + _net_probes(ssh_server, resolver),
                  backups=_backups(directory, ssh_server, s3, blob, rest, veeam, pki),
                  env={"VIGIL_TEST_VCENTER_PASSWORD": VCENTER_PASSWORD, "VIGIL_TEST_VEEAM_PASSWORD": VEEAM_PASSWORD,
                       "VIGIL_TEST_RESTIC": PASSWORD, "VIGIL_TEST_BORG": PASSWORD,
                       "VIGIL_TEST_S3_ID": s3.access_key_id, "VIGIL_TEST_S3_SECRET": s3.secret_access_key,
                       "VIGIL_TEST_AZURE_KEY": blob.account_key})


def _targets(ssh_server, snmp_lab, nut_lab, vcenter, meraki, meraki_pki, graph, graph_pki, app_cert,
             secrets: Path) -> list[dict]:
    return [
        {"name": "monitor", "kind": "host", **FAST},
        {**ssh_target(ssh_server, name="linux-1"), **SLOW},
        {**snmp_lab.v2c("ups-1", community="rfc1628-3phase"), **FAST},  # the name is no secret, unlike the community
        {**nut_lab.target("alarm"), **FAST},
        {**vcenter.target(), **FAST},
        {"name": "meraki", "kind": "meraki", "api_key": f"${{file:{secrets / 'meraki'}}}", "base_url": meraki.url,
         "ca_file": str(meraki_pki.ca), **FAST},
        {"name": "m365", "kind": "m365", "tenant_id": TENANT, "client_id": CLIENT_ID, "authority": graph.url,
         "graph_url": graph.url, "ca_file": str(graph_pki.ca),
         "client_certificate": {"cert_file": str(app_cert), "key_file": f"${{file:{secrets / 'graph-key'}}}"},
         **FAST},
    ]


def _probes(nginx) -> list[dict]:
    return [{"name": "web", "kind": "http", "url": nginx.url("good"), "ca_file": str(nginx.ca), **FAST}]


def _net_probes(ssh_server, resolver: Dnsmasq) -> list[dict]:
    """A tcp, dns and icmp probe, on peers already there: sshd's banner, dnsmasq, loopback."""
    return [
        {"name": "ssh-port", "kind": "tcp", "host": ssh_server.host, "port": ssh_server.port,
         "exchange": [{"expect": "^SSH-2\\.0-"}], **FAST},
        {"name": "www-resolves", "kind": "dns", "server": "127.0.0.1", "port": resolver.port,
         "query_name": "www.lab.example", "expect_answers": ["192.0.2.10"], **FAST},
        {"name": "loopback-ping", "kind": "icmp", "host": "127.0.0.1", **FAST},
    ]


def _databases(pg_lab, maria_lab) -> list[dict]:
    """The database probes (the session's PostgreSQL and MariaDB primaries, tests/kinds/probes/fixtures.py)."""
    return [{**db_target("postgres", pg_lab, pg_lab.primary, name="postgres-1"),
             "password": "${env:VIGIL_TEST_PG_PASSWORD}", **FAST},
            {**db_target("mysql", maria_lab, maria_lab.primary, name="mariadb-1"),
             "password": "${env:VIGIL_TEST_MARIADB_PASSWORD}", **FAST}]


def _backups(directory: Path, ssh_server, s3, blob, rest: str, veeam, pki: PKI) -> list[dict]:
    restic, offsite = ResticRepo(directory, "restic"), ResticRepo(directory, "rest", repository=f"rest:{rest}")
    restic.copy_to(offsite, restic.backup())
    borg = BorgRepo(directory, "borg")
    borg.create("fileserver-1")
    dumps = directory / "dumps"
    dumps.mkdir()
    (dumps / "erp-1.sql.gz").write_bytes(b"dump" * 100)
    os.utime(dumps / "erp-1.sql.gz")
    s3.client().create_bucket(Bucket="offsite")
    s3.client().put_object(Bucket="offsite", Key="erp/erp-1.sql.gz", Body=b"dump" * 100)
    container = blob.service().get_container_client("offsite")
    container.create_container()
    container.get_blob_client("erp/erp-1.sql.gz").upload_blob(b"dump" * 100)
    veeam_job = veeam.add_job("Fileserver Backup")  # last night's, as the others' are: every verdict is ok
    veeam.add_session(veeam_job, "Success", time.time() - 3600, time.time() - 3000)
    veeam.add_restore_point(veeam_job, "fileserver", time.time() - 3300)
    password = "${env:VIGIL_TEST_RESTIC}"
    return [
        {"name": "restic-nightly", **DUE,
         "primary": {"kind": "restic", "repository": restic.repository, "password": password},
         "offsite": {"kind": "restic", "repository": offsite.repository, "password": password}},
        {"name": "borg-nightly", **DUE,
         "primary": {"kind": "borg", "repository": borg.repository, "binary": borg.binary,
                     "passphrase": "${env:VIGIL_TEST_BORG}"}},
        {"name": "erp-dump", **DUE,
         "primary": {"kind": "files", "path": str(dumps), "pattern": "erp-*.sql.gz"},
         "offsite": {"kind": "sftp", "host": ssh_server.host, "port": ssh_server.port, "user": ssh_server.user,
                     "key_file": str(ssh_server.key_file), "known_hosts": str(ssh_server.known_hosts),
                     "path": str(dumps), "pattern": "erp-*.sql.gz"}},
        {"name": "erp-cloud", **DUE,
         "primary": {"kind": "s3", "bucket": "offsite", "prefix": "erp/", "endpoint_url": s3.endpoint_url,
                     "region": s3.region, "ca_file": str(s3.ca_file), "access_key_id": "${env:VIGIL_TEST_S3_ID}",
                     "secret_access_key": "${env:VIGIL_TEST_S3_SECRET}"},
         "offsite": {"kind": "azure_blob", "account_url": blob.account_url, "container": "offsite",
                     "prefix": "erp/", "credential": "${env:VIGIL_TEST_AZURE_KEY}", "ca_file": str(blob.ca_file)}},
        {"name": "veeam-fileserver", **DUE,
         "primary": {"kind": "veeam", "url": veeam.url, "user": "vigil", "password": "${env:VIGIL_TEST_VEEAM_PASSWORD}",
                     "job": "Fileserver Backup", "ca_file": str(pki.ca)}},
    ]
