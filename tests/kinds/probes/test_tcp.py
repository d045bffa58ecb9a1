"""`kind: tcp` against real servers: aiosmtpd's greeting and replies, ports that refuse, hold or stay silent."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

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
def chatterbox() -> Iterator[int]:
    """A port whose server sends line after line, never the one expected, until the client leaves."""
    listener = socket.create_server(("127.0.0.1", 0))

    def talk() -> None:
        with listener, listener.accept()[0] as client:
            try:
                while True:
                    client.sendall(b"* still talking\r\n" * 100)
            except OSError:
                return

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)


def test_an_expect_reads_a_bounded_amount(context):
    with chatterbox() as port:
        status, reason, _ = probe({"name": "x", "kind": "tcp", "host": "127.0.0.1", "port": port,
                                   "exchange": [{"expect": "^OK"}]}, context)
    assert (status, reason) == ("down", f"127.0.0.1:{port} sent 64 KiB without a line matching '^OK'")


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
