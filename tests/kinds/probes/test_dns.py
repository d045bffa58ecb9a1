"""`kind: dns` against a real dnsmasq: each record type, response codes, answers that differ or change,
a resolver that is not there or stays silent."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, load_config
from collectors.probes.collector import DnsProbe
from tests import collector_kit as kit
from tests.kinds.probes.probing import held_after, probe
from tests.lab.blackhole import udp_blackhole
from tests.lab.dnsmasq import dnsmasq
from tests.lab.harness import free_port

CHECKSUM = "vigil_probe_dns_answer_checksum"


def question(port: int, name: str, query_type: str = "A", **more) -> dict:
    return {"name": "dns", "kind": "dns", "server": "127.0.0.1", "port": port, "query_name": name,
            "query_type": query_type, **more}


def test_conformance_an_expected_address_emits_every_family(dns_conformance, context):
    out = kit.collect(dns_conformance, context)
    kit.assert_conforms(out, DnsProbe)
    assert out.verdict.status == "ok"


@pytest.mark.parametrize(("name", "query_type", "answers"), [
    ("www.lab.example", "A", ["192.0.2.10"]),
    ("www.lab.example", "AAAA", ["2001:DB8:0::10"]),  # as people write it: compared as an address
    ("lab.example", "MX", ["10 mail.lab.example."]),  # with the root's dot or without
    ("web.lab.example", "CNAME", ["WWW.lab.example"]),  # names in any case
    ("_imap._tcp.lab.example", "SRV", ["0 5 143 mail.lab.example"]),
    ("web.lab.example", "A", ["192.0.2.10"]),  # through the CNAME
])
def test_each_record_type_answers_as_expected(dnsmasq_lab, context, name, query_type, answers):
    status, reason, series = probe(question(dnsmasq_lab.port, name, query_type, expect_answers=answers), context)
    assert (status, reason) == ("ok", "")
    assert (series["vigil_probe_dns_response_code"], series["vigil_probe_dns_answers"]) == (0, 1)
    assert {key for key in series if key.startswith("vigil_probe_duration")} == {
        f"vigil_probe_duration_seconds:{phase}" for phase in ("resolve", "query", "total")}


def test_an_answer_that_differs_from_the_expected(dnsmasq_lab, context):
    status, reason, series = probe(question(dnsmasq_lab.port, "www.lab.example",
                                            expect_answers=["192.0.2.10", "192.0.2.11"]), context)
    assert (status, series["vigil_probe_success"]) == ("down", 0)
    assert reason == "127.0.0.1 answered www.lab.example A with 192.0.2.10, not 192.0.2.10, 192.0.2.11"


def test_answers_matched_by_a_pattern(dnsmasq_lab, context):
    matching = question(dnsmasq_lab.port, "lab.example", "MX", answers_match=r"^\d+ mail\.lab\.example$")
    assert probe(matching, context)[:2] == ("ok", "")
    other = question(dnsmasq_lab.port, "lab.example", "MX", answers_match=r"\.example\.org$")
    assert probe(other, context)[:2] == ("down", "127.0.0.1 answered lab.example MX with '10 mail.lab.example', "
                                                 "which does not match '\\\\.example\\\\.org$'")
    nothing = question(dnsmasq_lab.port, "www.lab.example", "MX", answers_match=".")
    assert probe(nothing, context)[:2] == ("down", "127.0.0.1 gave no MX record for www.lab.example to match '.'")


def test_a_name_that_does_not_exist_is_down_unless_expected(dnsmasq_lab, context):
    status, reason, series = probe(question(dnsmasq_lab.port, "nowhere.lab.example"), context)
    assert (status, reason) == ("down", "127.0.0.1 answered NXDOMAIN to nowhere.lab.example A, not NOERROR")
    assert (series["vigil_probe_dns_response_code"], series["vigil_probe_dns_answers"]) == (3, 0)
    assert probe(question(dnsmasq_lab.port, "nowhere.lab.example", expect_rcode="NXDOMAIN"), context)[0] == "ok"


def test_a_refused_question(dnsmasq_lab, context):
    status, reason, series = probe(question(dnsmasq_lab.port, "example.com"), context)
    assert (status, reason) == ("down", "127.0.0.1 answered REFUSED to example.com A, not NOERROR")
    assert series["vigil_probe_dns_response_code"] == 5


def test_the_checksum_changes_with_the_answer_and_only_with_it(tmp_path, context):
    with dnsmasq(tmp_path) as resolver:
        www = question(resolver.port, "www.lab.example")
        first = probe(www, context)[2][CHECKSUM]
        assert probe(www, context)[2][CHECKSUM] == first
        assert probe(question(resolver.port, "web.lab.example"), context)[2][CHECKSUM] == first  # same records
        resolver.set_addresses("www.lab.example", "192.0.2.99", "2001:db8::10")
        changed = probe(www, context)[2][CHECKSUM]
        resolver.set_addresses("www.lab.example", "192.0.2.10", "2001:db8::10")
        assert changed != first
        assert probe(www, context)[2][CHECKSUM] == first
    assert 0 <= first < 2 ** 48 and first == int(first)


def test_the_server_by_name(dnsmasq_lab, context):
    target = {**question(dnsmasq_lab.port, "www.lab.example"), "server": "localhost"}
    assert probe(target, context)[:2] == ("ok", "")


def test_no_name_server_on_the_port(context):
    port = free_port()
    status, reason, _ = probe(question(port, "www.lab.example"), context)
    assert (status, reason) == ("down", f"127.0.0.1 port {port} refused the question (no name server listens "
                                        "there)")


def test_a_silent_name_server(context):
    with udp_blackhole() as hole:
        status, reason, _ = probe(question(hole.port, "www.lab.example", timeout="1500ms"), context)
    assert (status, reason) == ("down", "no answer within 1.35s, during query")


def test_no_socket_outlives_a_probe(dnsmasq_lab, context):
    assert held_after(question(dnsmasq_lab.port, "www.lab.example"), context, "udp", dnsmasq_lab.port) == 0
    with udp_blackhole() as hole:  # cut short while it waits
        assert held_after(question(hole.port, "www.lab.example", timeout="1500ms"), context, "udp", hole.port) == 0


def test_an_expected_answer_that_is_no_record_of_its_type(tmp_path):
    config = tmp_path / "vigil.yaml"
    config.write_text("targets:\n  - {name: x, kind: dns, server: 127.0.0.1, query_name: lab.example, "
                      "query_type: MX, expect_answers: ['mail.lab.example']}\n")
    with pytest.raises(ConfigError, match="'mail.lab.example' is not a record of type MX"):
        load_config(config)


def test_an_answer_too_long_for_udp_is_asked_again_over_tcp(tmp_path, context):
    """60 addresses do not fit in 512 bytes: dnsmasq truncates the UDP answer, and the probe asks over TCP."""
    many = [f"192.0.2.{n}" for n in range(100, 160)]
    with dnsmasq(tmp_path) as resolver:
        resolver.set_addresses("many.lab.example", *many)
        status, reason, series = probe(question(resolver.port, "many.lab.example", expect_answers=many), context)
    assert (status, reason, series["vigil_probe_dns_answers"]) == ("ok", "", 60)
