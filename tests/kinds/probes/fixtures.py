"""The probe kinds' fixtures: their lab peers (tests/lab/: nginx, dnsmasq, PostgreSQL, ...) and each kind's
conformance target."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from tests import collector_kit as kit
from tests.lab.dnsmasq import Dnsmasq, dnsmasq
from tests.lab.dovecot import Dovecot, dovecot
from tests.lab.icmp import need_datagram_ping
from tests.lab.mariadb import mariadb
from tests.lab.nginx import nginx as run_nginx
from tests.lab.pki import PKI, make_pki
from tests.lab.postgres import Postgres, postgres
from tests.lab.smtp import Smtp, smtp

# --- http and tls (tests/kinds/probes/test_http.py, test_tls.py) ---


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    """The lab's nginx: plain HTTP and one HTTPS server per certificate case (tests/lab/nginx.py)."""
    with run_nginx(tmp_path_factory.mktemp("nginx")) as lab:
        yield lab


@pytest.fixture
def http_conformance(nginx) -> dict:
    """HTTPS with a good chain: the status, every certificate, both versions."""
    return {"name": "web", "kind": "http", "url": nginx.url("good"), "ca_file": str(nginx.ca)}


# --- tcp, dns, icmp: the network probes ---------------------------------------------------------


@pytest.fixture(scope="session")
def mail_pki(tmp_path_factory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("mail-pki"))


@pytest.fixture(scope="session")
def smtp_lab(tmp_path_factory, mail_pki) -> Iterator[Smtp]:
    """aiosmtpd with STARTTLS (tests/lab/smtp.py), for the whole session."""
    with smtp(tmp_path_factory.mktemp("smtp"), mail_pki) as server:
        yield server


@pytest.fixture(scope="session")
def dnsmasq_lab(tmp_path_factory) -> Iterator[Dnsmasq]:
    """dnsmasq answering for lab.example (tests/lab/dnsmasq.py); tests that change an answer start their own."""
    with dnsmasq(tmp_path_factory.mktemp("dnsmasq")) as resolver:
        yield resolver


@pytest.fixture(scope="session")
def dovecot_lab(tmp_path_factory, mail_pki) -> Iterator[Dovecot]:
    """Dovecot with IMAP and POP3 STARTTLS (tests/lab/dovecot.py), for the whole session."""
    with dovecot(tmp_path_factory.mktemp("dovecot"), mail_pki) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_lab(tmp_path_factory, mail_pki) -> Iterator[Postgres]:
    """A PostgreSQL primary with TLS (tests/lab/postgres.py), for its SSLRequest."""
    with postgres(tmp_path_factory.mktemp("postgres-tcp"), mail_pki, replica=False) as server:
        yield server


@pytest.fixture
def tcp_conformance(smtp_lab) -> dict:
    """SMTP with STARTTLS, verified: every family `kind: tcp` declares (the served chain, the versions)."""
    return {"name": "smtp", "kind": "tcp", "host": "127.0.0.1", "port": smtp_lab.port, "starttls": "smtp",
            "ca_file": str(smtp_lab.ca), "exchange": [{"send": "EHLO vigil.invalid"}, {"expect": "^250 "}]}


@pytest.fixture
def dns_conformance(dnsmasq_lab) -> dict:
    """An address as expected: every family `kind: dns` declares."""
    return {"name": "www-address", "kind": "dns", "server": "127.0.0.1", "port": dnsmasq_lab.port,
            "query_name": "www.lab.example", "expect_answers": ["192.0.2.10"]}


@pytest.fixture
def icmp_conformance() -> dict:
    """Loopback, which answers: every family `kind: icmp` declares."""
    need_datagram_ping()
    return {"name": "loopback", "kind": "icmp", "host": "127.0.0.1"}
# --- the database kinds (postgres, mysql): a primary and a replica of each, for the session ---

DB_PASSWORD_VARIABLE = "VIGIL_TEST_DB_PASSWORD"


@pytest.fixture(scope="session")
def db_pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("db-pki"))


@pytest.fixture(scope="session")
def pg_lab(tmp_path_factory, db_pki):
    with postgres(tmp_path_factory.mktemp("postgres"), db_pki) as lab:
        yield lab


@pytest.fixture(scope="session")
def maria_lab(tmp_path_factory, db_pki):
    with mariadb(tmp_path_factory.mktemp("mariadb"), db_pki) as lab:
        yield lab


def db_target(kind: str, lab, server, name: str = "db", **options) -> dict:
    """A probe of `server` (lab.primary or lab.replica) as the lab's monitoring account, TLS verified; its
    password is read from DB_PASSWORD_VARIABLE (see db_password)."""
    return {"name": name, "kind": kind, "host": "127.0.0.1", "port": server.port, "user": lab.user,
            "password": f"${{env:{DB_PASSWORD_VARIABLE}}}", "ca_file": str(lab.ca), **options}


@pytest.fixture
def pg(pg_lab, monkeypatch):
    """The PostgreSQL lab, its monitoring password where db_target's targets read it."""
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, pg_lab.password)
    return pg_lab


@pytest.fixture
def maria(maria_lab, monkeypatch):
    """The MariaDB lab, its monitoring password where db_target's targets read it."""
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, maria_lab.password)
    return maria_lab


@pytest.fixture
def postgres_conformance(pg) -> dict:
    """The replica: its role, lag, connections and served chain, every family `kind: postgres` declares."""
    return db_target("postgres", pg, pg.replica)


@pytest.fixture
def mysql_conformance(maria) -> dict:
    """The replica: its role, lag, connections and served chain, every family `kind: mysql` declares."""
    return db_target("mysql", maria, maria.replica)


def value(out, name: str, **labels) -> float | None:
    return kit.values(out, name).get(tuple(sorted(labels.items())))


def verdict(out) -> tuple[float | None, str]:
    """vigil_probe_success and the reason."""
    return value(out, "vigil_probe_success"), out.verdict.detail


def own_connections(port: int) -> list:
    """This process's TCP connections to `port`: none once a probe has returned."""
    return [c for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port]
