"""`kind: postgres` against a real PostgreSQL 15 primary and its streaming replica (tests/lab/postgres.py):
role, lag, connections, TLS verified, and each failure named in its reason."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from agent.collector import run_once
from tests import collector_kit as kit
from tests.kinds.probes.fixtures import DB_PASSWORD_VARIABLE, db_target, value, verdict
from tests.lab.harness import wait_until
from tests.lab.pki import faulty_server
from tests.lab.postgres import REPLICATOR, REPLICATOR_PASSWORD


def primary(pg, **options) -> dict:
    return db_target("postgres", pg, pg.primary, **options)


def test_primary_has_no_lag_and_counts_each_connection(pg, context):
    alone = kit.collect(primary(pg), context)
    assert verdict(alone) == (1, "")
    assert [dict(labels)["role"] for labels in kit.values(alone, "vigil_db_info")] == ["primary"]
    assert value(alone, "vigil_db_replica_lag_seconds") is None

    async def with_two_more() -> float:
        others = [await asyncpg.connect(host="127.0.0.1", port=pg.primary.port, user=pg.user, password=pg.password,
                                        database="postgres", ssl=False) for _ in range(2)]
        try:
            return value(await run_once(kit.build(primary(pg), context), strict=True), "vigil_db_connections")
        finally:
            for other in others:
                await other.close()

    assert asyncio.run(with_two_more()) == value(alone, "vigil_db_connections") + 2


def test_a_server_at_its_connection_limit_refuses_the_probe_in_its_own_words(pg, context):
    async def with_every_slot_taken() -> object:
        others = []
        try:
            while True:  # until the server refuses (3 slots stay reserved for superusers)
                others.append(await asyncpg.connect(host="127.0.0.1", port=pg.primary.port, user=pg.user,
                                                    password=pg.password, database="postgres", ssl=False))
        except asyncpg.TooManyConnectionsError:
            return await run_once(kit.build(primary(pg), context), strict=True)
        finally:
            for other in others:
                await other.close()

    assert verdict(asyncio.run(with_every_slot_taken())) == (
        0, "the server refused the login for user vigil: remaining connection slots are reserved for "
           "non-replication superuser connections")


def test_a_login_pg_hba_conf_does_not_allow(pg, context, monkeypatch):
    """The replication account may connect for replication only."""
    monkeypatch.setenv(DB_PASSWORD_VARIABLE, REPLICATOR_PASSWORD)
    success, reason = verdict(kit.collect(primary(pg, user=REPLICATOR), context))
    assert success == 0
    assert reason.startswith(f"the server refused the login for user {REPLICATOR} from this host (")
    assert reason.endswith("): add a line for it to pg_hba.conf")


def test_a_replica_behind_its_primary_reports_its_lag(pg, context):
    pg.primary.sql("INSERT INTO lab_rows (note) VALUES ('applied')")  # a last transaction applied, to count from
    wait_until(lambda: "applied" in pg.replica.sql("SELECT note FROM lab_rows"), 10, "the row on the replica")
    with pg.replay_paused():
        pg.primary.sql("INSERT INTO lab_rows (note) VALUES ('while the replica waits')")
        wait_until(lambda: int(pg.replica.sql("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
                                              "pg_last_wal_replay_lsn())")) > 0, 10, "WAL received, not replayed")
        out = kit.collect(db_target("postgres", pg, pg.replica), context)
    assert verdict(out) == (1, "")
    assert value(out, "vigil_db_replica_lag_seconds") > 0


@contextmanager
def primary_conninfo(pg, conninfo: str) -> Iterator[None]:
    """The replica following `conninfo` (reloaded: its WAL receiver restarts), then the primary again."""
    before = pg.replica.sql("SHOW primary_conninfo").replace("'", "''")
    pg.replica.sql(f"ALTER SYSTEM SET primary_conninfo = '{conninfo}'")
    pg.replica.sql("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        pg.replica.sql(f"ALTER SYSTEM SET primary_conninfo = '{before}'")
        pg.replica.sql("SELECT pg_reload_conf()")
        wait_until(lambda: pg.replica.sql("SELECT status FROM pg_stat_wal_receiver") == "streaming", 30,
                   "the replica to stream again")


def test_a_replica_whose_replication_is_stopped_fails_and_still_shows_its_state(pg, context):
    with primary_conninfo(pg, ""):  # no primary: no WAL receiver
        wait_until(lambda: pg.replica.sql("SELECT count(*) FROM pg_stat_wal_receiver") == "0", 10, "no receiver")
        out = kit.collect(db_target("postgres", pg, pg.replica), context)
    success, reason = verdict(out)
    assert success == 0
    assert reason.startswith("replication is stopped on the replica: no WAL receiver streams from the primary")
    assert [dict(labels)["role"] for labels in kit.values(out, "vigil_db_info")] == ["replica"]
    assert value(out, "vigil_db_replica_lag_seconds") is None  # not a number while it does not replicate


def test_an_unknown_database(pg, context):
    out = kit.collect(primary(pg, database="nope"), context)
    assert verdict(out) == (0, "the server has no database nope: check database")


@contextmanager
def reloaded(server, **settings: str) -> Iterator[None]:
    """The server with `settings` (ALTER SYSTEM, reloaded), then as before."""
    for name, setting in settings.items():
        server.sql(f"ALTER SYSTEM SET {name} = '{setting}'")
    server.sql("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        for name in settings:
            server.sql(f"ALTER SYSTEM RESET {name}")
        server.sql("SELECT pg_reload_conf()")


def test_a_server_without_tls_is_a_failure_when_tls_is_asked_and_plain_when_told_off(pg, context):
    with reloaded(pg.primary, ssl="off"):
        wait_until(lambda: pg.primary.sql("SHOW ssl") == "off", 10, "ssl off")
        refused = kit.collect(primary(pg), context)
        plain = kit.collect({key: item for key, item in primary(pg, tls="off").items() if key != "ca_file"}, context)
    assert verdict(refused) == (0, f"127.0.0.1:{pg.primary.port} does not offer TLS: enable TLS on the server, or "
                                   "set tls: off to connect unencrypted")
    assert verdict(plain) == (1, "")
    assert {dict(labels)["phase"] for labels in kit.values(plain, "vigil_probe_duration_seconds")} == {
        "resolve", "connect", "query", "total"}


def test_an_expired_certificate(pg, db_pki, context, tmp_path):
    expired = faulty_server(db_pki, tmp_path, "expired")
    for source, name in ((expired.server_cert, "expired.pem"), (expired.server_key, "expired.key")):
        shutil.copy(source, pg.primary.data / name)
        shutil.chown(pg.primary.data / name, "postgres", "postgres")
        os.chmod(pg.primary.data / name, 0o600)
    with reloaded(pg.primary, ssl_cert_file="expired.pem", ssl_key_file="expired.key"):
        out = kit.collect(primary(pg), context)
    success, reason = verdict(out)
    assert success == 0
    assert reason.startswith("its TLS certificate has expired (leaf CN=vigil test server\\, expired, on ")
    assert reason.endswith("); renew the certificate on the server")
    leaf = next(dict(labels) for labels in kit.values(out, "vigil_tls_certificate_not_after_timestamp_seconds"))
    assert leaf["position"] == "leaf"  # the chain read all the same
