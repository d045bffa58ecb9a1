"""A real dnsmasq answering for a zone of the test's own on a free loopback port (UDP and TCP).

dnsmasq rather than unbound: one foreground process from flags alone (no chroot, trust
anchor or control keys to set up), and it re-reads a hosts file on SIGHUP, which is how an
answer changes mid-test. A and AAAA records live in that file; MX, CNAME and SRV records are
flags, fixed for the run. A name in the zone that has no record is NXDOMAIN; a name outside
it is REFUSED (no upstream server). `query()` asks it with dnspython, for readiness and
for tests that need no probe.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from tests.lab.harness import Peer, free_port, need, running, wait_until

ZONE = "lab.example"  # RFC 6761: never delegated


@dataclass(frozen=True)
class Records:
    """The zone's data: addresses (A and AAAA, by name), MX (name -> [(preference, exchange)]),
    CNAME (alias -> target), SRV (name -> [(priority, weight, port, target)])."""

    addresses: dict[str, list[str]] = field(default_factory=dict)
    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    cname: dict[str, str] = field(default_factory=dict)
    srv: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)


LAB_RECORDS = Records(
    addresses={f"www.{ZONE}": ["192.0.2.10", "2001:db8::10"], f"mail.{ZONE}": ["192.0.2.25"]},
    mx={ZONE: [(10, f"mail.{ZONE}")]},
    cname={f"web.{ZONE}": f"www.{ZONE}"},
    srv={f"_imap._tcp.{ZONE}": [(0, 5, 143, f"mail.{ZONE}")]},
)


@dataclass(frozen=True)
class Answer:
    rcode: str
    records: list[str]  # as text: "192.0.2.10", "10 mail.lab.example", "0 5 143 mail.lab.example"


@dataclass(frozen=True)
class Dnsmasq:
    port: int
    hosts: Path
    peer: Peer

    def set_addresses(self, name: str, *addresses: str) -> None:
        """Give `name` these A/AAAA answers instead of its old ones (none: NXDOMAIN), once dnsmasq
        serves them."""
        entries = _read_hosts(self.hosts)
        entries[name] = list(addresses)
        _write_hosts(self.hosts, entries)
        self.peer.signal(signal.SIGHUP)
        wanted = sorted(addresses)
        wait_until(lambda: sorted(query(self.port, name, "A").records + query(self.port, name, "AAAA").records)
                   == wanted, 10, f"dnsmasq to answer {wanted} for {name}")


def _read_hosts(path: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        address, name = line.split()
        entries.setdefault(name, []).append(address)
    return entries


def _write_hosts(path: Path, entries: dict[str, list[str]]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(f"{address} {name}\n" for name, addresses in entries.items()
                                 for address in addresses))
    temporary.replace(path)


@contextmanager
def dnsmasq(directory: Path, records: Records = LAB_RECORDS) -> Iterator[Dnsmasq]:
    binary = need("dnsmasq", "run tests/lab/setup.sh (dnsmasq-base)")
    directory.mkdir(parents=True, exist_ok=True)
    hosts = directory / "hosts"
    _write_hosts(hosts, records.addresses)
    port = free_port()
    argv = [binary, "--no-daemon", "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-poll", "--pid-file=", "--user=root",
            f"--addn-hosts={hosts}", f"--local=/{ZONE}/", "--log-queries",
            *(f"--mx-host={name},{host},{preference}" for name, mxs in records.mx.items()
              for preference, host in mxs),
            *(f"--cname={alias},{target}" for alias, target in records.cname.items()),
            *(f"--srv-host={name},{target},{port_},{priority},{weight}" for name, srvs in records.srv.items()
              for priority, weight, port_, target in srvs)]
    with running(argv, directory / "dnsmasq.log", lambda: query(port, f"ready.{ZONE}", "A").rcode, "dnsmasq") as peer:
        yield Dnsmasq(port, hosts, peer)


def query(port: int, name: str, rtype: str, timeout: float = 2) -> Answer:
    """One question over UDP (TCP for a long answer) to 127.0.0.1:`port` (dnspython); the rcode and the answers
    of type `rtype`, as text without the root's dot ("10 mail.lab.example")."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))  # connected: a closed port is ConnectionRefusedError, not a timeout
        try:
            reply, _ = dns.query.udp_with_fallback(dns.message.make_query(name, rtype), "127.0.0.1", timeout, port,
                                                   udp_sock=sock)  # over TCP when truncated
        except dns.exception.Timeout:
            raise TimeoutError(f"no DNS answer from 127.0.0.1:{port} within {timeout}s") from None
    wanted = dns.rdatatype.from_text(rtype)
    records = [rdata.to_text(origin=dns.name.root, relativize=True) for rrset in reply.answer
               if rrset.rdtype == wanted for rdata in rrset]
    return Answer(dns.rcode.to_text(reply.rcode()), records)
