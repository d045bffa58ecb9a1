"""`kind: tcp` against real servers: aiosmtpd's greeting and replies, ports that refuse, hold or stay silent."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from cryptography import x509

from agent.config import ConfigError, load_config
from collectors.probes.collector import TcpProbe
from tests import collector_kit as kit
from tests.kinds.probes.probing import held_after, held_sockets, probe
from tests.lab.blackhole import UNRESOLVABLE, syn_dropped, tcp_blackhole
from tests.lab.harness import free_port

FAST = {"timeout": "1500ms"}  # a silent peer is judged within 1.35 s


def smtp_target(server, *exchange: dict, **more) -> dict:
    return {"name": "mail", "kind": "tcp", "host": "127.0.0.1", "port": server.port, "exchange": list(exchange),
            **more}


def test_conformance_a_greeting_emits_every_family(tcp_conformance, context):
    out = kit.collect(tcp_conformance, context)
    kit.assert_conforms(out, TcpProbe)
    assert out.verdict.status == "ok"


def test_a_port_that_accepts_is_up_and_each_phase_is_timed(smtp_lab, context):
    status, reason, series = probe(smtp_target(smtp_lab), context)
    assert (status, reason, series["vigil_probe_success"]) == ("ok", "", 1)
    assert {name for name in series if name.startswith("vigil_probe_duration_seconds")} == {
        f"vigil_probe_duration_seconds:{phase}" for phase in ("resolve", "connect", "exchange", "total")}


def test_lines_sent_and_expected_in_turn(smtp_lab, context):
    status, reason, _ = probe(smtp_target(smtp_lab, {"expect": "^220 "}, {"send": "EHLO vigil.example"},
                                          {"expect": "^250[ -]STARTTLS"}, {"send": "QUIT"}, {"expect": "^221"}),
                              context)
    assert (status, reason) == ("ok", "")


def test_a_line_that_never_comes_before_the_server_closes(smtp_lab, context):
    status, reason, series = probe(smtp_target(smtp_lab, {"send": "QUIT"}, {"expect": "^250 OK"}), context)
    assert status == "down" and series["vigil_probe_success"] == 0
    assert reason.startswith(f"127.0.0.1:{smtp_lab.port} closed the connection before a line matching '^250 OK' "
                             "(its last line: '221 Bye")


def test_an_unresolvable_host_says_so(context):
    status, reason, _ = probe({"name": "x", "kind": "tcp", "host": UNRESOLVABLE, "port": 25}, context)
    assert status == "down"
    assert reason.startswith(f"cannot resolve {UNRESOLVABLE} (")


def test_a_refused_connection_says_so(context):
    port = free_port()
    status, reason, _ = probe({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": port}, context)
    assert (status, reason) == ("down", f"127.0.0.1:{port} refused the connection (nothing listens on that port, "
                                        "or a firewall rejects it)")


def test_a_server_that_accepts_and_says_nothing(context):
    with tcp_blackhole() as hole:
        status, reason, _ = probe({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": hole.port,
                                   "exchange": [{"expect": "^220 "}], **FAST}, context)
    assert (status, reason) == ("down", "no answer within 1.35s, during exchange")


def test_a_host_that_drops_the_handshake(context):
    with syn_dropped() as port:
        status, reason, _ = probe({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": port, **FAST}, context)
    assert (status, reason) == ("down", "no answer within 1.35s, during connect")


@contextmanager
def one_client(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A port whose server takes one client and handles it with `handle`, in a thread, until either side leaves."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, listener.accept()[0] as client:
            try:
                handle(client)
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)


def chatterbox(chatter: bytes = b"* still talking\r\n") -> AbstractContextManager[int]:
    """A port whose server sends `chatter` again and again, never the line expected, until the client leaves."""

    def talk(client: socket.socket) -> None:
        while True:
            client.sendall(chatter * 100)

    return one_client(talk)


def test_an_expect_reads_a_bounded_amount(context):
    with chatterbox() as port:
        status, reason, _ = probe({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": port,
                                   "exchange": [{"expect": "^OK"}]}, context)
    assert (status, reason) == ("down", f"127.0.0.1:{port} sent 64 KiB without a line matching '^OK'")


def test_a_line_without_end_before_starttls(context):
    with chatterbox(b"220" + b"-" * 1000) as port:
        status, reason, _ = probe({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": port,
                                   "starttls": "smtp"}, context)
    assert (status, reason) == ("down", f"127.0.0.1:{port} sent a line longer than 8192 bytes before STARTTLS")


def test_no_socket_outlives_a_probe_however_it_ends(smtp_lab, context):
    assert held_after(smtp_target(smtp_lab, {"expect": "^220 "}), context, "tcp", smtp_lab.port) == 0
    assert held_after(smtp_target(smtp_lab, {"send": "QUIT"}, {"expect": "^never"}), context, "tcp",
                      smtp_lab.port) == 0
    with tcp_blackhole() as hole:  # cut short while it reads
        assert held_after({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": hole.port,
                           "exchange": [{"expect": "^220 "}], **FAST}, context, "tcp", hole.port) == 0
    with syn_dropped() as port:  # cut short while it connects
        queued = held_sockets("tcp", port)  # the peer's own clients, which fill its queue
        assert held_after({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": port, **FAST}, context, "tcp",
                          port) == queued


@pytest.mark.parametrize(("step", "words"), [
    ({"send": "QUIT", "expect": "^221"}, "exactly one of send: or expect:"),
    ({}, "exactly one of send: or expect:"),
    ({"expect": "(unclosed"}, "not a regular expression"),
])
def test_a_step_is_one_line_to_send_or_a_pattern(tmp_path, step, words):
    config = tmp_path / "vigil.yaml"
    config.write_text(f"targets:\n  - {{name: x, kind: tcp, host: h, port: 25, exchange: [{_flow(step)}]}}\n")
    with pytest.raises(ConfigError, match=words):
        load_config(config)


def _flow(step: dict) -> str:
    return "{" + ", ".join(f"{key}: '{value}'" for key, value in step.items()) + "}"


# --- TLS: at once, or after each protocol's STARTTLS ---------------------------------------------

def not_after(certificate) -> float:
    return x509.load_pem_x509_certificate(certificate.read_bytes()).not_valid_after_utc.timestamp()


def leaf_not_after(series: dict) -> float:
    (value,) = [v for k, v in series.items() if k.startswith("vigil_tls_certificate_not_after_timestamp_seconds:leaf")]
    return value


def starttls(port: int, protocol: str, ca, **more) -> dict:
    return {"name": protocol, "kind": "tcp", "host": "127.0.0.1", "port": port, "starttls": protocol,
            "ca_file": str(ca), **more}


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3", "postgres"])
def test_starttls_of_each_protocol_is_verified_and_reports_the_chain(protocol, smtp_lab, dovecot_lab, postgres_lab,
                                                                     mail_pki, context):
    port = {"smtp": smtp_lab.port, "imap": dovecot_lab.imap_port, "pop3": dovecot_lab.pop3_port,
            "postgres": postgres_lab.primary.port}[protocol]
    status, reason, series = probe(starttls(port, protocol, mail_pki.ca), context)
    assert (status, reason) == ("ok", "")
    assert leaf_not_after(series) == int(not_after(mail_pki.server_cert))
    assert series["vigil_tls_negotiated_version"] in (1.2, 1.3)
    assert series["vigil_tls_oldest_version_accepted"] >= 1.2
    assert {"vigil_probe_duration_seconds:starttls", "vigil_probe_duration_seconds:tls"} <= set(series)


def test_lines_after_starttls_go_over_tls(dovecot_lab, mail_pki, context):
    target = starttls(dovecot_lab.imap_port, "imap", mail_pki.ca,
                      exchange=[{"send": "c1 CAPABILITY"}, {"expect": r"^\* CAPABILITY .*AUTH=PLAIN"},
                                {"expect": "^c1 OK"}])
    assert probe(target, context)[:2] == ("ok", "")  # AUTH=PLAIN: offered over TLS only


def test_tls_from_the_first_byte(nginx, context):
    target = {"name": "web", "kind": "tcp", "host": "127.0.0.1", "port": nginx.ports["good"], "tls": True,
              "ca_file": str(nginx.ca), "exchange": [{"send": "GET /health HTTP/1.0\r\n"}, {"expect": "^HTTP/1.1 200"}]}
    status, reason, series = probe(target, context)
    assert (status, reason) == ("ok", "")
    assert leaf_not_after(series) == int(not_after(nginx.served["good"][0]))


def test_a_refused_certificate_is_named_and_its_chain_still_reported(nginx, context):
    target = {"name": "web", "kind": "tcp", "host": "127.0.0.1", "port": nginx.ports["expired"], "tls": True,
              "ca_file": str(nginx.ca)}
    status, reason, series = probe(target, context)
    assert status == "down" and reason.startswith("its TLS certificate has expired (leaf ")
    assert leaf_not_after(series) == int(not_after(nginx.served["expired"][0]))


def test_a_server_that_still_offers_tls_1_0_is_a_note(nginx, context):
    target = {"name": "web", "kind": "tcp", "host": "127.0.0.1", "port": nginx.ports["tls1.0"], "tls": True,
              "ca_file": str(nginx.ca)}
    out = kit.collect(target, context)
    assert out.verdict.status == "ok" and "TLS 1.0" in out.verdict.notes["tls"]
    assert kit.values(out, "vigil_tls_oldest_version_accepted") == {(): 1.0}


def test_tls_at_a_port_that_speaks_plain_text(smtp_lab, context):
    target = {"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": smtp_lab.port, "tls": True}
    assert probe(target, context)[:2] == ("down", f"the TLS handshake with 127.0.0.1:{smtp_lab.port} failed "
                                                  "(WRONG_VERSION_NUMBER); it does not speak TLS at once (starttls: "
                                                  "then?)")


@pytest.mark.parametrize(("protocol", "server", "words"), [
    ("smtp", "pop3", "the SMTP server's greeting is not 220: '+OK Dovecot (Debian) ready.'"),
    ("imap", "pop3", "the IMAP server's greeting is not OK: '+OK Dovecot (Debian) ready.'"),
    ("pop3", "imap", "the POP3 server's greeting is not +OK: '* OK"),
    ("postgres", "smtp", "the PostgreSQL server does not accept TLS (it answered b'2' to the SSLRequest"),
])
def test_a_server_that_does_not_speak_the_protocol_s_starttls(protocol, server, words, smtp_lab, dovecot_lab,
                                                             context):
    port = {"smtp": smtp_lab.port, "imap": dovecot_lab.imap_port, "pop3": dovecot_lab.pop3_port}[server]
    status, reason, _ = probe(starttls(port, protocol, smtp_lab.ca), context)
    assert status == "down" and reason.startswith(f"127.0.0.1:{port}: {words}")


def test_ldap_starttls_on_a_domain_controller(samba_dc, context):
    dc = samba_dc.controllers[0]
    target = {"name": "dc1-ldap", "kind": "tcp", "host": dc.address, "port": 389, "starttls": "ldap",
              "server_name": dc.host, "ca_file": str(dc.ca_file)}
    status, reason, series = probe(target, context)
    assert (status, reason) == ("ok", "")
    assert series["vigil_tls_negotiated_version"] in (1.2, 1.3)


def test_tls_and_starttls_together_are_a_config_error(tmp_path):
    config = tmp_path / "vigil.yaml"
    config.write_text("targets:\n  - {name: x, kind: tcp, host: h, port: 25, tls: true, starttls: smtp}\n")
    with pytest.raises(ConfigError, match="not both"):
        load_config(config)


def resetting() -> AbstractContextManager[int]:
    """A port whose server resets the connection once the client has spoken (a TLS front end that gave up)."""

    def reset(client: socket.socket) -> None:
        client.recv(1024)  # the ClientHello
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # closed: RST

    return one_client(reset)


def test_a_connection_reset_during_the_handshake(context):
    with resetting() as port:
        status, reason, _ = probe({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": port, "tls": True},
                                  context)
    assert (status, reason) == ("down", f"127.0.0.1:{port} broke off the TLS handshake (Connection reset by peer)")
