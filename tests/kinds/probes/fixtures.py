"""The probe kinds' fixtures: their lab peers (tests/lab/: nginx, dnsmasq, PostgreSQL, ...) and each kind's
conformance target."""

from __future__ import annotations

import pytest

from tests.lab.mariadb import mariadb
from tests.lab.nginx import nginx as run_nginx
from tests.lab.pki import make_pki
from tests.lab.postgres import postgres

# --- http and tls (tests/kinds/probes/test_http.py, test_tls.py) ---


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    """The lab's nginx: plain HTTP and one HTTPS server per certificate case (tests/lab/nginx.py)."""
    with run_nginx(tmp_path_factory.mktemp("nginx")) as lab:
        yield lab


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
def postgres_conformance(pg_lab, monkeypatch) -> dict:
    """The replica: its role, lag and connections, every family `kind: postgres` declares."""
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, pg_lab.password)
    return db_target("postgres", pg_lab, pg_lab.replica)


@pytest.fixture
def mysql_conformance(maria_lab, monkeypatch) -> dict:
    """The replica: its role, lag and connections, every family `kind: mysql` declares."""
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, maria_lab.password)
    return db_target("mysql", maria_lab, maria_lab.replica)
