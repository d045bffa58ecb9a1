"""`kind: mysql` against a real MariaDB 10.11 primary and its replica (tests/lab/mariadb.py): role, lag,
connections, TLS verified, and each failure named in its reason."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from collectors.probes.collector import MysqlProbe
from tests import collector_kit as kit
from tests.kinds.probes.fixtures import DB_PASSWORD_VARIABLE, db_target
from tests.kinds.probes.test_postgres import own_connections, value, verdict
from tests.lab.blackhole import UNRESOLVABLE, tcp_blackhole
from tests.lab.harness import free_port, wait_until
from tests.lab.mariadb import MAX_CONNECTIONS, _serve


@pytest.fixture
def maria(maria_lab, monkeypatch):
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, maria_lab.password)
    return maria_lab


def primary(maria, **options) -> dict:
    return db_target("mysql", maria, maria.primary, **options)


def replica(maria, **options) -> dict:
    return db_target("mysql", maria, maria.replica, **options)


def roles(out) -> list[str]:
    return [dict(labels)["role"] for labels in kit.values(out, "vigil_db_info")]


def test_conformance_replica_emits_every_family(mysql_conformance, maria, context):
    out = kit.collect(mysql_conformance, context)
    kit.assert_conforms(out, MysqlProbe)
    assert verdict(out) == (1, "")
    assert roles(out) == ["replica"]
    assert "MariaDB" in dict(next(iter(kit.values(out, "vigil_db_info"))))["version"]
    assert value(out, "vigil_db_replica_lag_seconds") == 0
    assert value(out, "vigil_db_connections_max") == MAX_CONNECTIONS
    assert value(out, "vigil_db_connections") >= 1
    phases = {dict(labels)["phase"] for labels in kit.values(out, "vigil_probe_duration_seconds")}
    assert phases == {"resolve", "connect", "tls", "login", "query", "total"}


def test_primary_has_no_lag(maria, context):
    out = kit.collect(primary(maria), context)
    assert verdict(out) == (1, "")
    assert roles(out) == ["primary"]
    assert value(out, "vigil_db_replica_lag_seconds") is None
    assert "-log" not in dict(next(iter(kit.values(out, "vigil_db_info"))))["version"]  # as the replica's


def test_a_replica_behind_its_primary_reports_its_lag(maria, context):
    with maria.lagging():
        maria.primary.sql("INSERT INTO lab.lab_rows (note) VALUES ('while the replica waits')")
        wait_until(lambda: int(maria.replica.replica_status()["Seconds_Behind_Master"]) >= 1, 10, "a lag")
        out = kit.collect(replica(maria), context)
    assert verdict(out) == (1, "")
    assert value(out, "vigil_db_replica_lag_seconds") >= 1


def test_a_replica_whose_replication_is_stopped_fails_and_still_shows_its_state(maria, context):
    with maria.replication_stopped():
        out = kit.collect(replica(maria), context)
    assert verdict(out) == (0, "replication is stopped on the replica (receiving: No, applying: No)")
    assert roles(out) == ["replica"]
    assert value(out, "vigil_db_replica_lag_seconds") is None


def test_a_refused_connection(maria, context):
    port = free_port()
    out = kit.collect({**primary(maria), "port": port}, context)
    assert verdict(out) == (0, f"127.0.0.1:{port} refused the connection: is the server running and listening on "
                               "that port?")
    assert not out.errors


def test_an_unresolvable_host(maria, context):
    success, reason = verdict(kit.collect({**primary(maria), "host": UNRESOLVABLE}, context))
    assert success == 0 and reason.startswith(f"cannot resolve {UNRESOLVABLE} (")


def test_a_wrong_password(maria, context, monkeypatch):
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, "not-the-password")
    assert verdict(kit.collect(primary(maria), context)) == (
        0, "the server refused the login for user vigil: check password")


def test_an_unknown_database(maria, context):
    assert verdict(kit.collect(primary(maria, database="nope"), context)) == (
        0, "the server has no database nope that user vigil may use: check database (and the user's grants)")


def test_a_query_longer_than_the_statement_timeout_is_ended_by_the_server(maria, context):
    out = kit.collect(primary(maria, query="SELECT SLEEP(5)", statement_timeout="300ms"), context)
    assert verdict(out) == (0, "the query ran longer than the statement timeout (0.3s): the server is overloaded "
                               "or the query is slow")


@pytest.fixture(scope="module")
def maria_without_tls(tmp_path_factory, db_pki):
    """A MariaDB started with --skip-ssl, which offers no TLS at all."""
    home = Path(tempfile.mkdtemp(prefix="vigil-mariadb-"))  # short: a socket's path has at most 107 bytes
    try:
        with _serve(home, "plain", tmp_path_factory.mktemp("mariadb-plain") / "plain.log", db_pki,
                    ("--skip-ssl",)) as server:
            server.sql("CREATE USER 'vigil'@'127.0.0.1' IDENTIFIED BY 'plain-password'; "
                       "GRANT PROCESS, REPLICA MONITOR ON *.* TO 'vigil'@'127.0.0.1'")
            yield server
    finally:
        shutil.rmtree(home, True)


def test_a_server_without_tls_is_a_failure_when_tls_is_asked_and_plain_when_told_off(
        maria_without_tls, maria, context, monkeypatch):
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, "plain-password")
    asked = {**primary(maria), "port": maria_without_tls.port}
    assert verdict(kit.collect(asked, context)) == (
        0, f"127.0.0.1:{maria_without_tls.port} does not offer TLS: enable TLS on the server, or set tls: off to "
           "connect unencrypted")
    plain = {key: item for key, item in asked.items() if key != "ca_file"} | {"tls": "off"}
    assert verdict(kit.collect(plain, context)) == (1, "")


def test_a_certificate_from_an_unknown_ca_is_refused_unless_tls_is_only_required(maria, context):
    unverified = {key: item for key, item in primary(maria).items() if key != "ca_file"}
    success, reason = verdict(kit.collect(unverified, context))
    assert success == 0 and reason.startswith(f"127.0.0.1:{maria.primary.port}: its TLS certificate is not trusted (")
    assert reason.endswith("; set ca_file: to the CA that signed it")
    assert verdict(kit.collect({**unverified, "tls": "required"}, context)) == (1, "")


def test_a_certificate_for_another_name(maria, context):
    out = kit.collect(primary(maria, server_name="db.example"), context)
    assert verdict(out)[1].startswith(f"127.0.0.1:{maria.primary.port}: its TLS certificate is not for db.example")


def test_no_connection_is_left_open_after_a_probe(maria, context):
    for target in (primary(maria), primary(maria, query="SELECT SLEEP(5)", statement_timeout="200ms")):
        kit.collect(target, context)
        assert own_connections(maria.primary.port) == []


def test_a_silent_server_is_a_finding_within_the_deadline_and_leaves_nothing_open(maria, context):
    with tcp_blackhole() as silent:
        out = kit.collect({**primary(maria), "port": silent.port, "timeout": "1s"}, context)
        assert own_connections(silent.port) == []
    assert verdict(out) == (0, "no answer within 0.9s, during connect")
