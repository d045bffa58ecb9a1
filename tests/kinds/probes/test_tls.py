"""collectors/probes/tls.py against the lab's nginx, one HTTPS server per certificate case: the served
chain by position, each refusal named in words, the chain still read when refused, the oldest version.

The kinds that shake hands (http, tcp's STARTTLS, the databases) run these same functions; their own
tests show the words through a whole probe.
"""

from __future__ import annotations

import asyncio
import re
import ssl

import pytest
from cryptography import x509

from agent.collector import Emitter
from collectors.probes import tls
from collectors.probes.config import TlsOptions
from collectors.probes.metrics import HANDSHAKE
from tests import collector_kit as kit
from tests.lab.harness import free_port

HOST = "127.0.0.1"


def not_after(path) -> float:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()


def subject(path) -> str:
    return x509.load_pem_x509_certificate(path.read_bytes()).subject.rfc4514_string()


async def shake(nginx, case: str, out: Emitter) -> tuple[tls.Certificate, ...] | str:
    """A verified handshake with `case`'s server: its chain when verified, else the reason."""
    handshake = tls.connect(HOST, nginx.ports[case], None)
    try:
        async with handshake(tls.client_context(TlsOptions(ca_file=nginx.ca))) as ssl_object:
            return tls.report(out, ssl_object)
    except ssl.SSLCertVerificationError as error:
        return str(await tls.refused(out, error, handshake))


def run(nginx, case: str) -> tuple[tuple[tls.Certificate, ...] | str, Emitter]:
    out = Emitter(HANDSHAKE, strict=True)
    return asyncio.run(shake(nginx, case, out)), out


def test_a_good_chain_is_reported_leaf_and_intermediate_with_the_negotiated_version(nginx):
    chain, out = run(nginx, "good")
    leaf, intermediate = nginx.served["good"]
    assert [(cert.position, cert.subject, cert.not_after) for cert in chain] == [
        ("leaf", subject(leaf), not_after(leaf)), ("intermediate", subject(intermediate), not_after(intermediate))]
    assert chain[0].issuer == chain[1].subject
    dates = kit.values(out, "vigil_tls_certificate_not_after_timestamp_seconds")
    assert sorted(dates.values()) == sorted([not_after(leaf), not_after(intermediate)])
    assert kit.values(out, "vigil_tls_negotiated_version") == {(): 1.3}


def test_the_intermediate_that_expires_first_is_reported_as_the_intermediate(nginx):
    chain, _ = run(nginx, "intermediate expires first")
    leaf, intermediate = nginx.served["intermediate expires first"]
    assert {cert.position: cert.not_after for cert in chain} == {"leaf": not_after(leaf),
                                                                 "intermediate": not_after(intermediate)}


REASONS = {
    "expired": r"^its TLS certificate has expired \(leaf CN=vigil test server\\, expired, on \d{4}-\d\d-\d\d "
               r"\d\d:\d\d UTC\); renew the certificate on the server$",
    "wrong host": r"^its TLS certificate is not for 127\.0\.0\.1; connect by a name the certificate lists",
    "no intermediate": r"^the server does not send the intermediate certificate that issued its TLS certificate "
                       r"\(CN=vigil test intermediate CA\\, 365 days\), and this host does not trust that issuer; "
                       r"configure the server to send its full chain",
    "self-signed": r"^its TLS certificate is self-signed, and not trusted; set ca_file: to that certificate",
}


@pytest.mark.parametrize("case", REASONS)
def test_each_refusal_is_named_and_the_chain_is_still_reported(nginx, case):
    reason, out = run(nginx, case)
    assert isinstance(reason, str)
    assert re.search(REASONS[case], reason), reason
    leaf = nginx.served[case][0]
    dates = kit.values(out, "vigil_tls_certificate_not_after_timestamp_seconds")
    assert dates[(("issuer", x509.load_pem_x509_certificate(leaf.read_bytes()).issuer.rfc4514_string()),
                  ("position", "leaf"), ("subject", subject(leaf)))] == not_after(leaf)
    assert len(dates) == len(nginx.served[case])


def test_an_untrusted_ca_is_named_so_with_its_fix(nginx):
    """Without the lab's CA (the system's store), the intermediate is sent but its root is unknown."""
    async def shake_without_ca() -> str:
        handshake = tls.connect(HOST, nginx.ports["good"], None)
        try:
            async with handshake(tls.client_context(None)):
                return "verified"
        except ssl.SSLCertVerificationError as error:
            return str(await tls.refused(Emitter(HANDSHAKE, strict=True), error, handshake))

    assert asyncio.run(shake_without_ca()) == ("its TLS certificate is not trusted: the chain the server sends "
                                               "was issued by CN=vigil test CA, a CA this host does not trust; "
                                               "set ca_file: to that CA")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oldest(nginx, case: str, checker: tls.OldestVersion) -> dict:
    out = Emitter(HANDSHAKE, strict=True)
    asyncio.run(checker.check(out, tls.connect(HOST, nginx.ports[case], None)))
    return kit.values(out, "vigil_tls_oldest_version_accepted")


def test_tls_1_0_still_offered_is_found_and_is_a_note(nginx):
    checker = tls.OldestVersion(Clock())
    assert oldest(nginx, "tls1.0", checker) == {(): 1.0}
    assert checker.notes() == {"TLS": "the server still accepts TLS 1.0, which is broken and deprecated: "
                                      "allow only TLS 1.2 and 1.3 on it"}


def test_a_modern_server_accepts_1_2_at_the_oldest_and_has_no_note(nginx):
    checker = tls.OldestVersion(Clock())
    assert oldest(nginx, "good", checker) == {(): 1.2}
    assert checker.notes() == {}


def test_the_oldest_version_is_checked_again_only_after_an_hour(nginx):
    clock = Clock()
    checker = tls.OldestVersion(clock)
    assert oldest(nginx, "good", checker) == {(): 1.2}
    clock.now += tls.RECHECK - 1  # not due: the last finding is emitted, whatever the server now is
    assert oldest(nginx, "tls1.0", checker) == {(): 1.2}
    clock.now += 1
    assert oldest(nginx, "tls1.0", checker) == {(): 1.0}


def test_a_server_that_cannot_be_reached_leaves_the_oldest_version_unknown(nginx):
    checker = tls.OldestVersion(Clock())
    out = Emitter(HANDSHAKE, strict=True)
    asyncio.run(checker.check(out, tls.connect(HOST, free_port(), None)))
    assert kit.values(out, "vigil_tls_oldest_version_accepted") == {}
    assert checker.version == ""
