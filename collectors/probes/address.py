"""Where a probe's host is: its addresses, or why it has none, in words for people.

An address written as such is used as it is; a name goes through the system's resolver
(getaddrinfo: /etc/hosts and DNS, as every other program on the host sees it), which blocks:
asyncio runs it in its one shared executor, never a thread per probe.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from collectors.probes.phases import ProbeFailed

Address = tuple[socket.AddressFamily, str]


async def addresses(host: str) -> list[Address]:
    """The host's addresses, in the resolver's order of preference."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(socket.AF_INET if literal.version == 4 else socket.AF_INET6, str(literal))]
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ProbeFailed(f"cannot resolve {host} ({error.strerror})") from None
    return list(dict.fromkeys((family, info[0]) for family, _, _, _, info in found))
