"""The two pieces of systemd the agent speaks: sd_notify and the watchdog."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send `READY=1`, `WATCHDOG=1`, ... to systemd; False when not run by systemd or it cannot be reached."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:  # a missing notify socket must not stop the agent
        log.warning("systemd notify failed socket=%s error=%s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec= when systemd asks this process for pings, else None."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 2


async def watchdog(interval: float) -> None:
    """Ping from the event loop itself, so a stuck loop gets the agent restarted."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
