"""One question to one name server (dnspython, asyncio), and its answer against the expected.

Records are compared in records.py's canonical text, so that an expected answer written
either way matches. The checksum of an answer is that of its sorted records: it
changes when, and only when, the records do, and a rule can watch it (`changes()`).
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.inet
import dns.message
import dns.rcode
import dns.rdatatype

from agent.reasons import describe
from collectors.probes.config import DnsConfig
from collectors.probes.phases import ProbeFailed
from collectors.probes.records import canonical

CHECKSUM_BYTES = 6  # 48 bits: a float64 holds them exactly


@dataclass(frozen=True)
class Answer:
    rcode: str  # NOERROR, NXDOMAIN, ...
    code: int
    records: tuple[str, ...]  # of the type asked, canonical, sorted

    def checksum(self) -> int:
        digest = hashlib.sha256("\n".join(self.records).encode()).digest()
        return int.from_bytes(digest[:CHECKSUM_BYTES], "big")


async def ask(server: str, port: int, name: str, rtype: str) -> Answer:
    """The server's answer to `name` `rtype` (over UDP, again over TCP when it is truncated)."""
    query = dns.message.make_query(name, rtype)
    where = f"{server} port {port}"
    try:
        # connected, so that a port where nothing listens is refused at once (ICMP port unreachable) rather than
        # waited for until the deadline
        udp = await dns.asyncbackend.get_default_backend().make_socket(
            dns.inet.af_for_address(server), socket.SOCK_DGRAM, 0, None, (server, port))
        async with udp:
            response, _ = await dns.asyncquery.udp_with_fallback(query, server, port=port, udp_sock=udp)
    except ConnectionRefusedError:
        raise ProbeFailed(f"{where} refused the question (no name server listens there)") from None
    except OSError as error:
        raise ProbeFailed(f"cannot ask {where} ({describe(error)})") from None
    except dns.exception.DNSException as error:
        raise ProbeFailed(f"{where} sent an answer that is not DNS ({describe(error)})") from None
    wanted = dns.rdatatype.from_text(rtype)
    records = sorted(canonical(rdata) for rrset in response.answer if rrset.rdtype == wanted for rdata in rrset)
    code = response.rcode()
    return Answer(dns.rcode.to_text(code), int(code), tuple(records))


def expect(answer: Answer, config: DnsConfig) -> None:
    """ProbeFailed unless the answer is as the target expects: its response code, its records."""
    asked, server = f"{config.query_name} {config.query_type}", config.server
    if answer.rcode != config.expect_rcode:
        raise ProbeFailed(f"{server} answered {answer.rcode} to {asked}, not {config.expect_rcode}")
    if config.expect_answers is not None and set(answer.records) != set(config.expect_answers):
        raise ProbeFailed(f"{server} answered {asked} with {_listed(answer.records)}, not "
                          f"{_listed(sorted(config.expect_answers))}")
    pattern = config.answers_match
    if pattern is not None and not answer.records:
        raise ProbeFailed(f"{server} gave no {config.query_type} record for {config.query_name} to match "
                          f"{pattern!r}")
    for record in answer.records if pattern is not None else ():
        if not re.search(pattern, record):
            raise ProbeFailed(f"{server} answered {asked} with {record!r}, which does not match {pattern!r}")


def _listed(records: Iterable[str]) -> str:
    return ", ".join(records) or "no record"
