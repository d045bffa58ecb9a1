"""The lab's peers for the service probes (issue 22) work: each serves what its probes will be
tested against. Only the standard library and the peers' own clients talk to them here;
the probes come later. `pytest --durations=0` shows each peer's start in its fixture's setup.
"""

from __future__ import annotations

import base64
import http.client
import imaplib
import json
import os
import poplib
import re
import smtplib
import socket
import ssl
import struct
import subprocess
import warnings

import pytest
from cryptography import x509

from tests.lab import dnsmasq as dns
from tests.lab import dovecot as imap
from tests.lab import nginx as web
from tests.lab.blackbox import blackbox
from tests.lab.harness import need, wait_until
from tests.lab.icmp import ANSWERING, need_datagram_ping, silent_address
from tests.lab.mariadb import mariadb
from tests.lab.pki import make_pki
from tests.lab.postgres import BIN, postgres
from tests.lab.smtp import smtp


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("services-pki"))


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    with web.nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


def not_after(certificate) -> float:
    return x509.load_pem_x509_certificate(certificate.read_bytes()).not_valid_after_utc.timestamp()


# --- nginx: HTTP routes and the certificate cases -------------------------------------------

def get(port: int, path: str, tls: ssl.SSLContext | None = None, timeout: float = 10,
        **headers: str) -> http.client.HTTPResponse:
    """One request, redirects not followed."""
    connection = (http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=timeout) if tls
                  else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    connection.request("GET", path, headers=headers)
    return connection.getresponse()


def test_nginx_routes_answer_as_the_http_probe_expects(nginx):
    health = get(nginx.http_port, "/health")
    assert (health.status, health.getheader("Content-Type")) == (200, "application/json")
    assert json.loads(health.read())["checks"]["database"] == "up"
    assert get(nginx.http_port, "/error").status == 500
    redirect = get(nginx.http_port, "/redirect")
    assert (redirect.status, redirect.getheader("Location")) == (302, f"http://127.0.0.1:{nginx.http_port}/health")
    assert get(nginx.http_port, "/nothing-here").status == 404
    with pytest.raises(TimeoutError):  # a client that waits half a second for /slow gets nothing
        get(nginx.http_port, "/slow?seconds=5", timeout=0.5).read()
    assert get(nginx.http_port, "/slow?seconds=0.1").read() == b"slow answer\n"


def test_nginx_basic_and_bearer_auth(nginx):
    anonymous = get(nginx.http_port, "/auth")
    assert (anonymous.status, anonymous.getheader("WWW-Authenticate")) == (401, 'Basic realm="vigil lab"')
    basic = base64.b64encode(f"{web.USER}:{web.PASSWORD}".encode()).decode()
    assert get(nginx.http_port, "/auth", Authorization=f"Basic {basic}").status == 200
    wrong = base64.b64encode(f"{web.USER}:not-it".encode()).decode()
    assert get(nginx.http_port, "/auth", Authorization=f"Basic {wrong}").status == 401
    assert get(nginx.http_port, "/bearer", Authorization=f"Bearer {web.TOKEN}").status == 200
    assert get(nginx.http_port, "/bearer", Authorization="Bearer other").status == 401


VERIFICATION = {  # what a client that trusts only the root CA makes of each case
    "good": None,
    "expired": "certificate has expired",
    "wrong host": "IP address mismatch",
    "no intermediate": "unable to get local issuer certificate",
    "self-signed": "self-signed certificate",
    "intermediate expires first": None,
    "tls1.0": None,
}


@pytest.mark.parametrize("case", VERIFICATION)
def test_nginx_sends_each_case_s_chain_and_a_client_verifies_it_so(nginx, case):
    openssl = need("openssl")
    shown = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{nginx.ports[case]}", "-showcerts"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30).stdout
    sent = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", shown, re.DOTALL)
    assert sent == [path.read_text() for path in nginx.served[case]]
    tls = ssl.create_default_context(cafile=str(nginx.ca))
    if VERIFICATION[case] is None:
        answer = get(nginx.ports[case], "/health", tls)
        assert (answer.status, json.loads(answer.read())["status"]) == (200, "ok")
    else:
        with pytest.raises(ssl.SSLCertVerificationError, match=VERIFICATION[case]):
            get(nginx.ports[case], "/health", tls)


def test_the_short_intermediate_expires_before_its_leaf_and_good_leaves_before_theirs(nginx):
    leaf, intermediate = nginx.served["intermediate expires first"]
    assert not_after(intermediate) < not_after(leaf)
    leaf, intermediate = nginx.served["good"]
    assert not_after(leaf) < not_after(intermediate)


def tls_version(port: int, version: ssl.TLSVersion) -> str:
    """The protocol a client limited to `version` (at security level 0) negotiates."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 is deprecated: that is the point
        tls.minimum_version = tls.maximum_version = version
    tls.set_ciphers("DEFAULT@SECLEVEL=0")  # OpenSSL 3 refuses TLS 1.0 and 1.1 above level 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, tls.wrap_socket(sock) as wrapped:
        return wrapped.version()


def test_one_server_still_offers_tls_1_0_and_1_1_and_the_others_do_not(nginx):
    assert tls_version(nginx.ports["tls1.0"], ssl.TLSVersion.TLSv1) == "TLSv1"
    assert tls_version(nginx.ports["tls1.0"], ssl.TLSVersion.TLSv1_1) == "TLSv1.1"
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        tls_version(nginx.ports["good"], ssl.TLSVersion.TLSv1)
    assert tls_version(nginx.ports["good"], ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


# --- blackbox_exporter, probing nginx ------------------------------------------------------

def test_blackbox_exporter_probes_nginx_and_reports_the_earliest_certificate(nginx, tmp_path):
    https = {"prober": "http", "timeout": "5s", "http": {"tls_config": {"ca_file": str(nginx.ca)}}}
    with blackbox(tmp_path, {"https": https}) as exporter:
        good = exporter.probe(nginx.url("good"), "https")
        short = exporter.probe(nginx.url("intermediate expires first"), "https")
        expired = exporter.probe(nginx.url("expired"), "https")
    assert good["probe_success"] == 1 and good["probe_http_status_code"] == 200
    assert good["probe_ssl_earliest_cert_expiry"] == int(not_after(nginx.served["good"][0]))  # the leaf's
    # the intermediate's date, not the leaf's: what blackbox_exporter's users trip over (its #340, #1386)
    assert short["probe_ssl_earliest_cert_expiry"] == int(not_after(nginx.served["intermediate expires first"][1]))
    assert expired["probe_success"] == 0


# --- PostgreSQL: TLS, the monitoring role, a streaming replica -----------------------------

@pytest.fixture(scope="module")
def pg(tmp_path_factory, pki):
    with postgres(tmp_path_factory.mktemp("postgres"), pki) as lab:
        yield lab


def psql(pg, port: int, query: str) -> subprocess.CompletedProcess:
    """`query` as the monitoring role over TCP, TLS verified against the lab's CA."""
    dsn = (f"host=127.0.0.1 port={port} user={pg.user} dbname=postgres sslmode=verify-full "
           f"sslrootcert={pg.ca}")
    return subprocess.run([str(BIN / "psql"), dsn, "-X", "-At", "-c", query], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "PGPASSWORD": pg.password})


def test_postgres_monitoring_role_logs_in_over_verified_tls_and_cannot_write(pg):
    ssl_row = psql(pg, pg.primary.port, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert ssl_row.stdout.strip() in ("t|TLSv1.3", "t|TLSv1.2"), ssl_row.stderr
    created = psql(pg, pg.primary.port, "CREATE TABLE nope (id int)")
    assert "read-only transaction" in created.stderr
    replicas = psql(pg, pg.primary.port, "SELECT state FROM pg_stat_replication")
    assert replicas.stdout.strip() == "streaming", replicas.stderr  # pg_monitor sees replication
    assert psql(pg, pg.replica.port, "SELECT pg_is_in_recovery()").stdout.strip() == "t"


def test_postgres_answers_an_ssl_request_with_the_test_certificate(pg):
    """PostgreSQL's own STARTTLS: an SSLRequest, the byte S, then a TLS handshake."""
    with socket.create_connection(("127.0.0.1", pg.primary.port), timeout=10) as sock:
        sock.sendall(struct.pack("!II", 8, 80877103))
        assert sock.recv(1) == b"S"
        tls = ssl.create_default_context(cafile=str(pg.ca))
        with tls.wrap_socket(sock, server_hostname="127.0.0.1") as wrapped:
            assert wrapped.getpeercert()["subject"] == ((("commonName", "vigil test server"),),)


def test_postgres_replica_replicates_and_lags_while_replay_is_paused(pg):
    pg.primary.sql("INSERT INTO lab_rows (note) VALUES ('before the pause')")
    wait_until(lambda: "before the pause" in pg.replica.sql("SELECT note FROM lab_rows"), 10, "the row on the replica")
    with pg.replay_paused():
        pg.primary.sql("INSERT INTO lab_rows (note) VALUES ('during the pause')")
        wait_until(lambda: int(pg.replica.sql("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
                                              "pg_last_wal_replay_lsn())")) > 0, 10, "WAL received, not replayed")
        assert "during the pause" not in pg.replica.sql("SELECT note FROM lab_rows")
    wait_until(lambda: "during the pause" in pg.replica.sql("SELECT note FROM lab_rows"), 10, "replay to resume")


# --- MariaDB: TLS, the monitoring user, a replica ------------------------------------------

@pytest.fixture(scope="module")
def maria(tmp_path_factory, pki):
    with mariadb(tmp_path_factory.mktemp("mariadb"), pki) as lab:
        yield lab


def mariadb_client(maria, port: int, statement: str) -> subprocess.CompletedProcess:
    """`statement` as the monitoring user over TCP, TLS verified against the lab's CA."""
    return subprocess.run([need("mariadb"), "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", maria.user,
                           f"--password={maria.password}", f"--ssl-ca={maria.ca}", "--ssl-verify-server-cert",
                           "--batch", "--skip-column-names", "-e", statement],
                          capture_output=True, text=True, timeout=30)


def test_mariadb_monitoring_user_logs_in_over_verified_tls_and_cannot_write(maria):
    status = mariadb_client(maria, maria.primary.port, "SHOW STATUS LIKE 'Ssl_version'")
    assert status.stdout.split() in (["Ssl_version", "TLSv1.3"], ["Ssl_version", "TLSv1.2"]), status.stderr
    assert "Access denied" in mariadb_client(maria, maria.primary.port, "CREATE DATABASE nope").stderr
    on_replica = mariadb_client(maria, maria.replica.port, "SHOW REPLICA STATUS")  # needs REPLICA MONITOR
    assert f"\t{maria.primary.port}\t" in on_replica.stdout, on_replica.stderr  # its Master_Port


def test_mariadb_replica_replicates_lags_and_stops(maria):
    maria.primary.sql("INSERT INTO lab.lab_rows (note) VALUES ('before the delay')")
    wait_until(lambda: "before the delay" in maria.replica.sql("SELECT note FROM lab.lab_rows"), 10, "the row")
    with maria.lagging():
        maria.primary.sql("INSERT INTO lab.lab_rows (note) VALUES ('during the delay')")
        wait_until(lambda: int(maria.replica.replica_status()["Seconds_Behind_Master"]) >= 1, 10, "a lag")
        assert "during the delay" not in maria.replica.sql("SELECT note FROM lab.lab_rows")
    wait_until(lambda: "during the delay" in maria.replica.sql("SELECT note FROM lab.lab_rows"), 10, "catching up")
    with maria.replication_stopped():
        status = maria.replica.replica_status()
        assert (status["Slave_IO_Running"], status["Slave_SQL_Running"], status["Seconds_Behind_Master"]) == (
            "No", "No", "NULL")
    wait_until(lambda: maria.replica.replica_status()["Slave_IO_Running"] == "Yes", 10, "replication again")


# --- dnsmasq --------------------------------------------------------------------------------

def test_dnsmasq_answers_each_record_type_and_nxdomain_and_an_answer_changes(tmp_path):
    with dns.dnsmasq(tmp_path) as resolver:
        def answer(name: str, rtype: str) -> tuple[str, list[str]]:
            found = dns.query(resolver.port, name, rtype)
            return found.rcode, found.records

        assert answer("www.lab.example", "A") == ("NOERROR", ["192.0.2.10"])
        assert answer("www.lab.example", "AAAA") == ("NOERROR", ["2001:db8::10"])
        assert answer("lab.example", "MX") == ("NOERROR", ["10 mail.lab.example"])
        assert answer("web.lab.example", "CNAME") == ("NOERROR", ["www.lab.example"])
        assert answer("_imap._tcp.lab.example", "SRV") == ("NOERROR", ["0 5 143 mail.lab.example"])
        assert answer("nowhere.lab.example", "A") == ("NXDOMAIN", [])
        assert answer("example.com", "A") == ("REFUSED", [])
        resolver.set_addresses("www.lab.example", "192.0.2.99")
        assert answer("web.lab.example", "A") == ("NOERROR", ["192.0.2.99"])  # through the CNAME, too


# --- mail: SMTP, IMAP and POP3 with STARTTLS ------------------------------------------------

def test_smtp_requires_starttls_and_accepts_mail_after_it(tmp_path, pki):
    with smtp(tmp_path, pki) as server:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            assert client.mail("probe@lab.example")[0] == 530  # "Must issue a STARTTLS command first"
            client.starttls(context=ssl.create_default_context(cafile=str(server.ca)))
            client.ehlo()
            assert client.sendmail("probe@lab.example", ["ops@lab.example"], "Subject: lab\r\n\r\nhello\r\n") == {}
        wait_until(lambda: "Subject: lab" in server.peer.output(), 10, "the message in aiosmtpd's log")


def test_imap_and_pop3_offer_starttls_with_the_test_certificate(tmp_path, pki):
    with imap.dovecot(tmp_path, pki) as server:
        tls = ssl.create_default_context(cafile=str(server.ca))
        client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
        assert "STARTTLS" in client.capabilities
        client.starttls(tls)  # verifies the certificate for 127.0.0.1
        assert client.login(imap.USER, imap.PASSWORD)[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
        client.logout()
        pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
        assert "STLS" in pop.capa()
        pop.stls(tls)
        pop.user(imap.USER)
        assert pop.pass_(imap.PASSWORD).startswith(b"+OK")
        assert pop.stat() == (0, 0)
        pop.quit()


# --- ICMP -----------------------------------------------------------------------------------

def ping(address: str, timeout: float) -> bool:
    """One echo request over a datagram ICMP socket: whether a reply came within `timeout`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(timeout)
        sock.connect((address, 0))
        sock.send(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"vigil lab")
        try:
            return sock.recv(1024)[0] == 0  # echo reply
        except TimeoutError:
            return False


def test_unprivileged_ping_answers_from_loopback_and_not_from_the_silent_address():
    need_datagram_ping()
    assert ping(ANSWERING, 5)
    with silent_address() as silent:
        assert not ping(silent, 1)
    assert ping(silent, 5)  # the rule went with the block


def test_ping_sockets_are_open_to_an_unprivileged_user():
    need_datagram_ping()
    setpriv = need("setpriv", "apt-get install util-linux")
    python = need("/usr/bin/python3")  # Debian's: nobody cannot reach a Python under /root
    opened = subprocess.run([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", python, "-c",
                             "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)"],
                            capture_output=True, text=True, timeout=30)
    assert opened.returncode == 0, opened.stderr
