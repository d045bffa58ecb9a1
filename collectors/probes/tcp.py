"""A TCP conversation: connect, then send lines and expect lines, reading a bounded amount.

A `send:` line goes out with CRLF; an `expect:` reads lines until one matches its pattern,
at most READ_LIMIT bytes (a server that talks on and on without the line is a finding, not
a probe that reads forever).
"""

from __future__ import annotations

import asyncio
import re

from agent.reasons import describe
from collectors.probes.address import Address
from collectors.probes.config import Exchange
from collectors.probes.phases import ProbeFailed

LINE_LIMIT = 8192  # a longer line is read in pieces of this size
READ_LIMIT = 64 * 1024  # what one expect: reads at most


async def connect(host: str, found: list[Address], port: int) -> tuple[asyncio.StreamReader,
                                                                      asyncio.StreamWriter]:
    """A connection to the first of the host's addresses that accepts one."""
    failures: list[OSError] = []
    for _, address in found:
        try:
            return await asyncio.open_connection(address, port, limit=LINE_LIMIT)
        except OSError as error:
            failures.append(error)
    raise ProbeFailed(refused(host, port, failures[0]))


def refused(host: str, port: int, error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return f"{host}:{port} refused the connection (nothing listens on that port, or a firewall rejects it)"
    return f"cannot connect to {host}:{port} ({describe(error)})"


async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, steps: list[Exchange],
                   where: str) -> None:
    """Each step in turn: send its line, or read lines until one matches."""
    try:
        for step in steps:
            if step.send is not None:
                writer.write(step.send.encode() + b"\r\n")
                await writer.drain()
            else:
                await expect(reader, step.expect, where)
    except OSError as error:
        raise ProbeFailed(f"{where}: {describe(error)}") from None


async def expect(reader: asyncio.StreamReader, regex: str, where: str) -> None:
    pattern = re.compile(regex)
    read, last = 0, None
    while read < READ_LIMIT:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as end:
            line = end.partial
        except asyncio.LimitOverrunError as long:
            line = await reader.readexactly(long.consumed)
        if not line:
            said = f" (its last line: {last!r})" if last is not None else " (it sent nothing)"
            raise ProbeFailed(f"{where} closed the connection before a line matching {pattern.pattern!r}{said}")
        read += len(line)
        last = line.decode(errors="replace").rstrip("\r\n")
        if pattern.search(last):
            return
    raise ProbeFailed(f"{where} sent {READ_LIMIT // 1024} KiB without a line matching {pattern.pattern!r}")
