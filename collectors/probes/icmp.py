"""Unprivileged ping: echo requests on a datagram ICMP socket, their round trips and losses.

No raw socket, no root, no capability: Linux lets a process open a datagram ICMP socket when
one of its groups is in net.ipv4.ping_group_range (for IPv6 too), fills in the identifier
itself and hands the socket only the replies to its own requests. One socket and one
coroutine per probe, no thread: requests go out `spacing` apart while replies are read, and
the probe waits `wait` after the last request for the replies still due.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from agent.reasons import describe
from collectors.probes.phases import ProbeFailed

RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
ECHO = {  # family: (protocol, request type, reply type)
    socket.AF_INET: (socket.IPPROTO_ICMP, 8, 0),
    socket.AF_INET6: (socket.IPPROTO_ICMPV6, 128, 129),
}
PAYLOAD = b"vigil ping"


async def ping(family: socket.AddressFamily, address: str, count: int, spacing: float, wait: float,
               monotonic: Callable[[], float]) -> list[float]:
    """The round trips (seconds) of the replies to `count` echo requests; a lost request has none."""
    protocol, request, reply = ECHO[family]
    loop = asyncio.get_running_loop()
    with _socket(family, protocol) as sock:
        try:
            sock.connect((address, 0))  # a datagram socket: nothing is sent, only the peer fixed
            sent: dict[int, float] = {}
            trips: dict[int, float] = {}
            while len(trips) < count:
                if len(sent) < count:
                    sequence = len(sent) + 1
                    sent[sequence] = monotonic()
                    await loop.sock_sendall(sock, struct.pack("!BBHHH", request, 0, 0, 0, sequence) + PAYLOAD)
                    until = loop.time() + (spacing if len(sent) < count else wait)
                elif loop.time() >= until:
                    break
                await _replies(loop, sock, reply, count, sent, trips, until, monotonic)
        except OSError as error:
            raise ProbeFailed(f"cannot ping {address} ({describe(error)})") from None
    return list(trips.values())


async def _replies(loop: asyncio.AbstractEventLoop, sock: socket.socket, reply: int, count: int,
                   sent: dict[int, float], trips: dict[int, float], until: float,
                   monotonic: Callable[[], float]) -> None:
    """Read replies until `until` (loop time), or until the last request's reply."""
    try:
        async with asyncio.timeout_at(until):
            while len(trips) < len(sent):
                data = await loop.sock_recv(sock, 1024)
                kind, _, _, _, sequence = struct.unpack_from("!BBHHH", data)
                if kind == reply and sequence in sent and sequence not in trips:
                    trips[sequence] = monotonic() - sent[sequence]
            if len(sent) < count:
                await asyncio.sleep(until - loop.time())  # every reply so far is in: the next request waits its turn
    except TimeoutError:
        pass


def _socket(family: socket.AddressFamily, protocol: int) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM, protocol)
    except PermissionError:
        raise ProbeFailed(refusal()) from None
    except OSError as error:  # IPv6 off on this host, say
        raise ProbeFailed(f"cannot open a ping socket ({describe(error)})") from None
    sock.setblocking(False)
    return sock


def refusal() -> str:
    """Why the kernel refused a datagram ICMP socket, and the setting that allows it."""
    try:
        allowed = " ".join(RANGE.read_text().split())
    except OSError:
        allowed = "unreadable"
    return (f"the kernel does not allow unprivileged ping to this agent's group {os.getgid()} "
            f"(net.ipv4.ping_group_range is \"{allowed}\"): set net.ipv4.ping_group_range = 0 2147483647 in "
            f"/etc/sysctl.d/ and run sysctl --system")
