"""The probe kinds' fixtures: their lab peers (tests/lab/: nginx, dnsmasq, PostgreSQL, ...) and each kind's
conformance target."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.dnsmasq import Dnsmasq, dnsmasq
from tests.lab.dovecot import Dovecot, dovecot
from tests.lab.icmp import need_datagram_ping
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
