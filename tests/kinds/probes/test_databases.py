"""What `kind: postgres` and `kind: mysql` do alike, against each real server (tests/lab/postgres.py,
mariadb.py): the served chain, TLS only required, and each failure of the connection or the login."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from agent import registry
from agent.collector import run_once
from agent.net.http import CaFileError
from tests import collector_kit as kit
from tests.kinds.probes.fixtures import DB_PASSWORD_VARIABLE, db_target, own_connections, value, verdict
from tests.lab.blackhole import UNRESOLVABLE, tcp_blackhole
from tests.lab.harness import free_port
from tests.lab.pki import make_pki

SLOW_QUERY = {"postgres": "SELECT pg_sleep(5)", "mysql": "SELECT SLEEP(5)"}


@dataclass(frozen=True)
class Db:
    kind: str
    lab: object

    @property
    def port(self) -> int:
        return self.lab.primary.port

    def target(self, **options) -> dict:
        return db_target(self.kind, self.lab, self.lab.primary, **options)

    def unverified(self, **options) -> dict:
        return {key: item for key, item in self.target(**options).items() if key != "ca_file"}


@pytest.fixture(params=["postgres", "mysql"])
def db(request) -> Db:
    return Db(request.param, request.getfixturevalue("pg" if request.param == "postgres" else "maria"))


def test_conformance_replica_emits_every_family(db, context, request):
    out = kit.collect(request.getfixturevalue(f"{db.kind}_conformance"), context)
    kit.assert_conforms(out, registry.collector_class(db.kind))
    assert verdict(out) == (1, "")
    (info,) = (dict(labels) for labels in kit.values(out, "vigil_db_info"))
    assert info["role"] == "replica"
    assert info["version"].startswith("15.") if db.kind == "postgres" else "-MariaDB" in info["version"]
    assert value(out, "vigil_db_replica_lag_seconds") == 0  # nothing written: all received is applied
    assert value(out, "vigil_db_connections_max") == 20  # the lab's max_connections
    assert value(out, "vigil_db_connections") >= 1
    phases = {dict(labels)["phase"] for labels in kit.values(out, "vigil_probe_duration_seconds")}
    assert phases == {"resolve", "connect", "tls", "login", "query", "total"}


def test_the_served_chain_and_the_versions_are_reported(db, context):
    out = kit.collect(db.target(), context)
    assert verdict(out) == (1, "")
    chain = {dict(labels)["position"]: dict(labels)["subject"]
             for labels in kit.values(out, "vigil_tls_certificate_not_after_timestamp_seconds")}
    assert chain["leaf"] == "CN=vigil test server"
    assert value(out, "vigil_tls_negotiated_version") in (1.2, 1.3)
    assert value(out, "vigil_tls_oldest_version_accepted") == 1.2  # both refuse 1.0 and 1.1 by default
    assert out.verdict.notes == {}


def test_a_certificate_from_an_unknown_ca_is_refused_unless_tls_is_only_required(db, context, caplog):
    out = kit.collect(db.unverified(), context)
    success, reason = verdict(out)
    assert success == 0
    if db.kind == "postgres":  # the leaf alone, from a CA this host does not trust
        assert reason.startswith("the server does not send the intermediate certificate that issued its TLS "
                                 "certificate (CN=vigil test CA)")
    else:  # MariaDB sends its CA (ssl-ca) after the leaf
        assert reason == ("its TLS certificate is not trusted (self-signed certificate in certificate chain); set "
                          "ca_file: to the CA that signed it")
    assert kit.values(out, "vigil_tls_certificate_not_after_timestamp_seconds")  # the chain read all the same
    required = kit.collect(db.unverified(tls="required"), context)
    assert verdict(required) == (1, "")  # encrypted, not verified: as asked
    assert "TLS verification is off target=" in caplog.text  # and said so, as vmware's insecure_skip_verify is
    assert value(required, "vigil_tls_negotiated_version") in (1.2, 1.3)


def test_a_certificate_for_another_name(db, context):
    assert verdict(kit.collect(db.target(server_name="db.example"), context)) == (
        0, "its TLS certificate is not for db.example; connect by a name the certificate lists, or give the server "
           "a certificate for this name")


def test_a_refused_connection(db, context):
    port = free_port()
    out = kit.collect({**db.target(), "port": port}, context)
    assert verdict(out) == (0, f"127.0.0.1:{port} refused the connection: is the server running and listening on "
                               "that port?")
    assert not out.errors  # vigil_up 1: the agent worked


def test_an_unresolvable_host(db, context):
    success, reason = verdict(kit.collect({**db.target(), "host": UNRESOLVABLE}, context))
    assert success == 0 and reason.startswith(f"cannot resolve {UNRESOLVABLE} (")


def test_a_wrong_password(db, context, monkeypatch):
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, "not-the-password")
    assert verdict(kit.collect(db.target(), context)) == (
        0, "the server refused the login for user vigil: check password")


def test_a_query_longer_than_the_statement_timeout_is_ended_by_the_server(db, context):
    out = kit.collect(db.target(query=SLOW_QUERY[db.kind], statement_timeout="300ms"), context)
    assert verdict(out) == (0, "the query ran longer than the statement timeout (0.3s): the server is overloaded "
                               "or the query is slow")


def test_no_connection_is_left_open_after_a_probe(db, context):
    for target in (db.target(), db.target(query=SLOW_QUERY[db.kind], statement_timeout="200ms"), db.unverified()):
        kit.collect(target, context)
        assert own_connections(db.port) == []


def test_a_silent_server_is_a_finding_within_the_deadline_and_leaves_nothing_open(db, context):
    with tcp_blackhole() as silent:
        out = kit.collect({**db.target(), "port": silent.port, "timeout": "1s"}, context)
        assert own_connections(silent.port) == []
    assert verdict(out) == (0, "no answer within 0.9s, during connect")
    assert not out.errors


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_certificate_check_asked_without_tls_verify_is_a_config_error(kind, monkeypatch, context):
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, "x")
    target = {"name": "db", "kind": kind, "host": "db.example", "user": "vigil",
              "password": f"${{env:{DB_PASSWORD_VARIABLE}}}", "tls": "required", "ca_file": __file__}
    with pytest.raises(ValidationError, match="ca_file and server_name verify the certificate: they need tls: "
                                              "verify, not tls: required"):
        kit.build(target, context)


def test_a_ca_file_that_holds_no_certificate_fails_the_run_not_the_probe(db, context):
    """vigil's own config is at fault, not the server: vigil_up 0, as for a secret it cannot read."""
    with pytest.raises(CaFileError, match=f"cannot use ca_file {__file__}: .*; it must be a PEM file of CA "
                                          "certificates"):
        kit.collect(db.target(ca_file=__file__), context)


def test_a_renewed_ca_file_is_read_at_the_next_probe(db, context, tmp_path):
    """The TLS context is kept between runs (loading trust costs more than the rest of a probe), and made
    again when its ca_file changes: no restart after a CA is renewed."""
    ca_file = tmp_path / "ca.pem"
    other = make_pki(tmp_path / "other")
    probe = kit.build(db.target(ca_file=str(ca_file)), context)

    def run_with(ca) -> tuple[float | None, str]:
        ca_file.write_bytes(ca.read_bytes())
        return verdict(asyncio.run(run_once(probe, strict=True)))

    assert run_with(db.lab.ca) == (1, "")
    assert run_with(other.ca)[0] == 0  # another CA: the server's certificate no longer verifies
    assert run_with(db.lab.ca) == (1, "")
