"""Ping targets: 127.0.0.1 answers, and `silent_address()` gives a loopback address that never does.

Unprivileged ping uses datagram ICMP sockets, which the kernel allows only to the groups in
net.ipv4.ping_group_range. Debian's default is "1 0" (no group at all, root included; the
"0 2147483647" of systemd's sysctl.d is not in Debian's package), so setup.sh sets it (as
root, until the next boot); vigil's systemd unit needs no capability for it, only the host
setting. The silent address is a 127.x address whose echo requests an nftables rule of
the test's own drops on input: the request leaves, no reply comes, and nothing is reported
back to the sender, as with a host that is down. TEST-NET addresses are no substitute
here: on this machine 192.0.2.0/24 is the real network (ARP, then "host unreachable"), and
the gateway answers the others with "unreachable" at once.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.lab.harness import REQUIRED, need

ANSWERING = "127.0.0.1"
RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
_addresses = itertools.count(1)


def datagram_ping_allowed() -> bool:
    """Whether this process may open a datagram ICMP socket (its group is in ping_group_range)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
    except PermissionError:
        return False
    return True


def need_datagram_ping() -> None:
    """Skip (fail under VIGIL_LAB=require) unless unprivileged ping works for this process."""
    if not datagram_ping_allowed():
        message = (f"unprivileged ping is not allowed for group {os.getgid()}: net.ipv4.ping_group_range is "
                   f"\"{' '.join(RANGE.read_text().split())}\" (run tests/lab/setup.sh as root)")
        if REQUIRED:
            pytest.fail(f"VIGIL_LAB=require: {message}")
        pytest.skip(message)


@contextmanager
def silent_address() -> Iterator[str]:
    """A 127.x address that drops every echo request, for as long as the block lasts."""
    nft = need("nft", "run tests/lab/setup.sh (nftables)")
    number = next(_addresses)
    address = f"127.77.{os.getpid() % 250 + 1}.{number % 250 + 1}"  # another process's differ (or drop too)
    table = f"vigil_lab_{os.getpid()}_{number}"  # one per address: removing it removes the rule
    rules = f"""table ip {table} {{
        chain input {{
            type filter hook input priority filter; policy accept;
            ip daddr {address} icmp type echo-request drop
        }}
    }}"""
    subprocess.run([nft, "-f", "-"], input=rules, text=True, check=True, capture_output=True)
    try:
        yield address
    finally:
        subprocess.run([nft, "delete", "table", "ip", table], check=True, capture_output=True)
