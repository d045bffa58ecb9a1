"""What the probe kinds' tests read from one probe: its verdict, its series, the sockets it left."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from agent.collector import run_once
from tests import collector_kit as kit

TABLES = ("tcp", "tcp6", "udp", "udp6", "icmp", "icmp6")  # /proc/net's, ICMP for the datagram ping sockets


def probe(target: dict, context) -> tuple[str, str, dict[str, float]]:
    """Run one probe as the agent does: its status (ok, down), its reason, and its series by name
    (a phase's duration as `vigil_probe_duration_seconds:connect`)."""
    out = kit.collect(target, context)
    series = {s.name + "".join(f":{value}" for value in s.labels.values()): s.value for s in out.samples()}
    return out.verdict.status, out.verdict.detail, series


def held_after(target: dict, context, table: str, port: int | None = None) -> int:
    """Run one probe, then count the sockets of `table` (to `port`) this process holds while the event loop
    still runs: as in the agent, where a socket the probe left behind would stay open (asyncio.run's end
    would close it and hide it)."""

    async def run() -> int:
        await run_once(kit.build(target, context), strict=True)
        return held_sockets(table, port)

    return asyncio.run(run())


def held_sockets(table: str, port: int | None = None) -> int:
    """How many sockets of /proc/net/`table` (tcp, udp, icmp, and their IPv6 tables) this process holds, to
    `port` if given."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            mine.add(os.readlink(f"/proc/self/fd/{fd}").removeprefix("socket:[").removesuffix("]"))
        except OSError:
            continue  # closed meanwhile
    held = 0
    for name in (table, f"{table}6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rpartition(":")[2], 16)
            held += fields[9] in mine and (port is None or remote_port == port)
    return held
