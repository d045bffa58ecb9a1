"""A real dnsmasq answering for a zone of the test's own on a free loopback port (UDP and TCP).

dnsmasq rather than unbound: one foreground process from flags alone (no chroot, trust
anchor or control keys to set up), and it re-reads a hosts file on SIGHUP, which is how an
answer changes mid-test. A and AAAA records live in that file; MX, CNAME and SRV records are
flags, fixed for the run. A name in the zone that has no record is NXDOMAIN; a name outside
it is REFUSED (no upstream server). `query()` is a minimal DNS client, for readiness and
for tests that need no probe.
"""

from __future__ import annotations

import ipaddress
import random
import signal
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.harness import Peer, free_port, need, running, wait_until

ZONE = "lab.example"  # RFC 6761: never delegated
TYPES = {"A": 1, "CNAME": 5, "MX": 15, "AAAA": 28, "SRV": 33}
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


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
    """One question over UDP to 127.0.0.1:`port`; the rcode and the answers of type `rtype`."""
    ident = random.randrange(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", TYPES[rtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))  # connected: a closed port is ConnectionRefusedError, not a timeout
        sock.send(packet)
        reply = sock.recv(4096)
    _, flags, questions, answers, _, _ = struct.unpack("!HHHHHH", reply[:12])
    offset = 12
    for _ in range(questions):
        offset = _name(reply, offset)[1] + 4
    records = []
    for _ in range(answers):
        offset = _name(reply, offset)[1]
        kind, _, _, length = struct.unpack("!HHIH", reply[offset:offset + 10])
        data = offset + 10
        if kind == TYPES[rtype]:
            records.append(_rdata(reply, data, length, rtype))
        offset = data + length
    return Answer(RCODES.get(flags & 0xF, str(flags & 0xF)), records)


def _rdata(reply: bytes, offset: int, length: int, rtype: str) -> str:
    if rtype in ("A", "AAAA"):
        return str(ipaddress.ip_address(reply[offset:offset + length]))
    if rtype == "CNAME":
        return _name(reply, offset)[0]
    if rtype == "MX":
        return f"{struct.unpack('!H', reply[offset:offset + 2])[0]} {_name(reply, offset + 2)[0]}"
    priority, weight, port = struct.unpack("!HHH", reply[offset:offset + 6])
    return f"{priority} {weight} {port} {_name(reply, offset + 6)[0]}"


def _name(reply: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed domain name at `offset`: the name, and the offset just after it."""
    labels, end = [], None
    while True:
        length = reply[offset]
        if length >= 0xC0:  # a pointer to the rest of the name
            end = end or offset + 2
            offset = struct.unpack("!H", reply[offset:offset + 2])[0] & 0x3FFF
            continue
        if length == 0:
            return ".".join(labels), end or offset + 1
        labels.append(reply[offset + 1:offset + 1 + length].decode())
        offset += 1 + length
