"""The lab's peers for issues 24 and 26 work as the tests of `kind: ad` and of shards will need them:
Samba AD domain controllers (one, and a replicating pair), VictoriaMetrics, Prometheus in agent mode.

Each test proves one thing a later test relies on, through the protocols a collector uses
(LDAP, DNS, Kerberos, HTTP), with the lab's own helpers changing the peer.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct
import subprocess
import time
from contextlib import ExitStack

import pytest

from tests.lab.harness import http_get, need, wait_until
from tests.lab.pki import make_pki
from tests.lab.prometheus import prometheus
from tests.lab.samba import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    DOMAIN,
    MONITOR,
    MONITOR_PASSWORD,
    LdapError,
    dns_query,
)
from tests.lab.victoriametrics import victoria_metrics

DAY = 864_000_000_000  # in the 100 ns ticks of AD's times
UF_LOCKOUT = 0x10  # in msDS-User-Account-Control-Computed


def generalized_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y%m%d%H%M%S.0Z").replace(tzinfo=dt.UTC)


def filetime(value: str) -> dt.datetime:
    return dt.datetime(1601, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(value) // 10)


def one(domain, query: str, *attributes: str, **options) -> dict:
    entries = domain.search(BASE_DN, query, *attributes, **options)
    assert len(entries) == 1, entries
    return entries[0]


def reps_from(domain, dc, naming_context: str = BASE_DN) -> list[tuple[int, int, int]]:
    """(version, consecutive failures, result of the last attempt) of each repsFrom value of a
    naming context, read over LDAP: repsFromToBlob version 1 (MS-DRSR 5.167, NDR little-endian)."""
    head = domain.search(naming_context, "(objectClass=*)", "repsFrom", scope="base", dc=dc)[0]  # as the monitor
    values = []
    for blob in head.get("repsFrom", []):
        version, _, _, failures = struct.unpack_from("<IIII", blob)
        values.append((version, failures, struct.unpack_from("<I", blob, 32)[0]))
    return values


# --- one domain controller ---

def test_dns_names_the_dc_in_its_srv_record(samba_dc):
    dc = samba_dc.dc1
    assert dns_query(dc.address, f"_ldap._tcp.dc._msdcs.{DOMAIN}") == [(0, 100, 389, dc.host)]
    assert dns_query(dc.address, f"_kerberos._tcp.{DOMAIN}") == [(0, 100, 88, dc.host)]
    assert dns_query(dc.address, f"_gc._tcp.{DOMAIN}") == [(0, 100, 3268, dc.host)]
    assert dns_query(dc.address, dc.host, "A") == [dc.address]


def test_ldaps_verifies_with_samba_s_own_ca_by_host_name_and_not_with_another(samba_dc, tmp_path):
    """Samba's certificate names the DC in its CN alone (no subjectAltName): a client connects
    to the address and checks the host name, as Python's ssl does."""
    dc = samba_dc.dc1
    context = ssl.create_default_context(cafile=str(dc.ca_file))
    with socket.create_connection((dc.address, 636), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=dc.host) as tls:
        subject = dict(field[0] for field in tls.getpeercert()["subject"])
    assert subject["commonName"].lower() == dc.host
    other = ssl.create_default_context(cafile=str(make_pki(tmp_path).ca))
    with socket.create_connection((dc.address, 636), timeout=10) as raw, pytest.raises(ssl.SSLCertVerificationError):
        other.wrap_socket(raw, server_hostname=dc.host)
    with pytest.raises(LdapError):
        samba_dc.search(BASE_DN, f"(sAMAccountName={MONITOR})", "dn", ca_file=make_pki(tmp_path / "other").ca)


@pytest.mark.parametrize("service", ["ldaps", "ldap", "gcs", "gc"])
def test_the_monitoring_account_binds_on_every_ldap_port(samba_dc, service):
    """LDAPS 636, LDAP 389 with StartTLS, the global catalog 3269 and 3268 with StartTLS."""
    entry = one(samba_dc, f"(sAMAccountName={MONITOR})", "memberOf", service=service)
    assert entry["dn"] == [f"CN={MONITOR},CN=Users,{BASE_DN}"]
    assert "memberOf" not in entry  # in no group but Domain Users (its primary group): least privilege


def test_a_simple_bind_in_the_clear_is_refused(samba_dc):
    """AD refuses passwords without TLS: a collector must use StartTLS on 389."""
    dc = samba_dc.dc1
    done = subprocess.run([need("ldapsearch"), "-x", "-H", f"ldap://{dc.address}", "-D", f"{MONITOR}@{DOMAIN}",
                           "-w", MONITOR_PASSWORD, "-b", BASE_DN, "-s", "base"], capture_output=True, text=True)
    assert done.returncode == 8 and "Transport encryption required" in done.stderr


def test_the_root_dse_answers_anonymously(samba_dc):
    root = samba_dc.dc1.root_dse("isSynchronized", "isGlobalCatalogReady", "currentTime", "domainFunctionality",
                                 "forestFunctionality", "dsServiceName")
    assert root["isSynchronized"] == ["TRUE"] and root["isGlobalCatalogReady"] == ["TRUE"]
    assert root["domainFunctionality"] == root["forestFunctionality"] == ["4"]  # Windows Server 2008 R2
    assert abs(generalized_time(root["currentTime"][0]) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert root["dsServiceName"][0].startswith("CN=NTDS Settings,CN=DC1,")


def test_kerberos_answers_on_88(samba_dc):
    user = samba_dc.add_user("kerberos")
    assert samba_dc.kinit(user, "Lab-User-Pass-1").returncode == 0
    wrong = samba_dc.kinit(user, "not-the-password")
    assert wrong.returncode == 1 and "Password incorrect" in wrong.stderr


def test_a_user_added_to_domain_admins_shows_to_the_monitoring_account(samba_dc):
    def members() -> list[str]:
        return one(samba_dc, "(&(objectClass=group)(cn=Domain Admins))", "member")["member"]

    before = members()
    user = samba_dc.add_user("admin")
    samba_dc.add_to_group(user, "Domain Admins")
    assert sorted(members()) == sorted([*before, f"CN={user},CN=Users,{BASE_DN}"])


def test_a_locked_out_account_shows_to_the_monitoring_account(samba_dc):
    user = samba_dc.add_user("locked")
    samba_dc.lock_out(user)
    entry = one(samba_dc, f"(sAMAccountName={user})", "lockoutTime", "msDS-User-Account-Control-Computed")
    assert int(entry["lockoutTime"][0]) > 0
    assert int(entry["msDS-User-Account-Control-Computed"][0]) & UF_LOCKOUT
    assert user in str(samba_dc.search(BASE_DN, "(&(objectCategory=person)(lockoutTime>=1))", "sAMAccountName"))
    assert "revoked" in samba_dc.kinit(user, "Lab-User-Pass-1").stderr  # locked: the right password fails too


def test_a_service_account_s_password_expires_in_three_days(samba_dc):
    user = samba_dc.add_user("svc", ou="Service Accounts")
    samba_dc.expire_password_in(user, 3)
    entry = one(samba_dc, f"(sAMAccountName={user})", "pwdLastSet", "msDS-UserPasswordExpiryTimeComputed",
                "msDS-ResultantPSO")
    assert entry["dn"] == [f"CN={user},OU=Service Accounts,{BASE_DN}"]
    assert int(entry["msDS-UserPasswordExpiryTimeComputed"][0]) - int(entry["pwdLastSet"][0]) == 3 * DAY
    expires = filetime(entry["msDS-UserPasswordExpiryTimeComputed"][0]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=2) < expires <= dt.timedelta(days=3)


def test_a_stopped_dc_answers_nothing_and_comes_back(samba_dc):
    dc = samba_dc.dc1
    with samba_dc.stopped(dc):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((dc.address, 389), timeout=5)
        with pytest.raises(TimeoutError):
            dns_query(dc.address, f"_ldap._tcp.dc._msdcs.{DOMAIN}", timeout=1)
    assert dc.root_dse("isSynchronized") == {"dn": [""], "isSynchronized": ["TRUE"]}


def test_a_dc_s_clock_can_be_set_off(samba_dc):
    """libfaketime moves the DC's clock, as its root DSE's currentTime shows."""
    dc = samba_dc.dc1
    with samba_dc.skewed(dc, "+10m"):
        skew = generalized_time(dc.root_dse("currentTime")["currentTime"][0]) - dt.datetime.now(dt.UTC)
        assert dt.timedelta(minutes=9) < skew < dt.timedelta(minutes=11)
    skew = generalized_time(dc.root_dse("currentTime")["currentTime"][0]) - dt.datetime.now(dt.UTC)
    assert abs(skew) < dt.timedelta(minutes=1)


# --- two domain controllers ---

def test_a_change_on_one_dc_replicates_to_the_other(samba_pair):
    dc1, dc2 = samba_pair.controllers
    assert sorted(dns_query(dc1.address, f"_ldap._tcp.dc._msdcs.{DOMAIN}")) == [(0, 100, 389, dc1.host),
                                                                               (0, 100, 389, dc2.host)]
    user = samba_pair.add_user("replicated")  # on dc1
    wait_until(lambda: samba_pair.search(BASE_DN, f"(sAMAccountName={user})", "dn", dc=dc2), 30,
               "the new user to reach dc2")


def test_replication_state_is_repsfrom_and_the_monitoring_account_reads_it(samba_pair):
    """Samba serves each naming context's repsFrom (binary, to Domain Users too) and none of the
    constructed msDS-Repl* attributes Windows adds (not even to an administrator)."""
    admin = {"user": ADMIN, "password": ADMIN_PASSWORD}
    for dc in samba_pair.controllers:
        for naming_context in (BASE_DN, f"CN=Configuration,{BASE_DN}", f"CN=Schema,CN=Configuration,{BASE_DN}"):
            assert reps_from(samba_pair, dc, naming_context) == [(1, 0, 0)]  # one partner, no failure
    head = one(samba_pair, "(objectClass=*)", "msDS-NCReplInboundNeighbors", "msDS-NCReplCursors", scope="base",
               **admin)
    root = samba_pair.search("", "(objectClass=*)", "msDS-ReplAllInboundNeighbors", "msDS-ReplConnectionFailures",
                             scope="base", **admin)[0]
    assert head == {"dn": [BASE_DN]} and root == {"dn": [""]}


def test_stopping_the_partner_breaks_replication_until_it_is_back(samba_pair):
    dc1, dc2 = samba_pair.controllers
    with samba_pair.stopped(dc2):
        failing = wait_until(lambda: [r for r in reps_from(samba_pair, dc1) if r[1] > 0], 30,
                             "dc1 to fail to pull from dc2")
        assert failing[0][2] != 0  # a Windows error code, 1225 (connection refused) here
        shown = samba_pair.replication(dc1)["repsFrom"]
        assert all(neighbour["consecutive failures"] > 0 for neighbour in shown if neighbour["NC dn"] == BASE_DN)
    wait_until(lambda: reps_from(samba_pair, dc1) == [(1, 0, 0)], 30, "dc1 to pull from dc2 again")



# --- a central store and Prometheus agents ---

def agent(directory, store, replica: str):
    """Prometheus in agent mode scraping the store's own /metrics as job "target" every second and
    remote-writing to it, with the external labels of an HA pair's member at site "lab"."""
    scrape = [{"job_name": "target", "static_configs": [{"targets": [store.url.removeprefix("http://")]}]}]
    return prometheus(directory / f"agent-{replica}", scrape,
                      extra={"remote_write": [{"url": store.write_url}]}, agent=True,
                      external_labels={"site": "lab", "replica": replica})


def samples_sent(agent) -> float:
    """What an agent's remote_write delivered, from its own /metrics."""
    exposition = http_get(f"{agent.url}/metrics")[1].decode()
    return sum(float(line.split()[-1]) for line in exposition.splitlines()
               if line.startswith("prometheus_remote_storage_samples_total{"))


def test_an_ha_pair_remote_writes_two_series_while_the_replica_label_stays(tmp_path):
    """Each agent's external labels reach the store, and -dedup.minScrapeInterval alone merges
    nothing: the pair's series differ in `replica`."""
    with victoria_metrics(tmp_path / "store") as store, agent(tmp_path, store, "a"), agent(tmp_path, store, "b"):
        series = wait_until(lambda: len(found := store.query('up{job="target"}')) == 2 and found, 30,
                            "both replicas' series")
    instance = store.url.removeprefix("http://")
    assert sorted((one["metric"]["replica"], one["metric"], one["value"][1]) for one in series) == [
        (replica, {"__name__": "up", "job": "target", "instance": instance, "site": "lab", "replica": replica}, "1")
        for replica in ("a", "b")]


def test_an_ha_pair_is_one_deduplicated_series_once_the_store_drops_replica_and_outlives_a_member(tmp_path):
    with victoria_metrics(tmp_path / "store", drop_labels=("replica",)) as store, ExitStack() as first:
        a = first.enter_context(agent(tmp_path, store, "a"))
        with agent(tmp_path, store, "b") as b:
            wait_until(lambda: samples_sent(a) > 0 and samples_sent(b) > 0, 30, "both agents to remote-write")
            started = time.time()
            [series] = store.wait_for('up{job="target"}')
            assert series["metric"] == {"__name__": "up", "job": "target",
                                        "instance": store.url.removeprefix("http://"), "site": "lab"}
            wait_until(lambda: time.time() > started + 6, 10, "five seconds of both agents' samples")
            [samples] = store.query('count_over_time(up{job="target"}[5s])')
            assert int(samples["value"][1]) <= 6  # one a second, not two (without -dedup.minScrapeInterval: 10)
            first.close()  # agent a stops
            stopped = time.time()
            wait_until(lambda: float(store.query('timestamp(up{job="target"})')[0]["value"][1]) > stopped + 2, 30,
                       "samples from agent b alone")
            assert len(store.query('up{job="target"}')) == 1
