"""`kind: mysql` against a real MariaDB 10.11 primary and its replica (tests/lab/mariadb.py): role, lag,
connections, TLS verified, and each failure named in its reason."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests import collector_kit as kit
from tests.kinds.probes.fixtures import DB_PASSWORD_VARIABLE, db_target, value, verdict
from tests.lab.harness import wait_until
from tests.lab.mariadb import _serve


def primary(maria, **options) -> dict:
    return db_target("mysql", maria, maria.primary, **options)


def replica(maria, **options) -> dict:
    return db_target("mysql", maria, maria.replica, **options)


def roles(out) -> list[str]:
    return [dict(labels)["role"] for labels in kit.values(out, "vigil_db_info")]


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


def test_an_unknown_database(maria, context):
    assert verdict(kit.collect(primary(maria, database="nope"), context)) == (
        0, "the server has no database nope that user vigil may use: check database (and the user's grants)")


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
