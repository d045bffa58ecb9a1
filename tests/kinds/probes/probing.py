"""What the probe kinds' tests read from one probe: its verdict, its series, the sockets it left."""

from __future__ import annotations

import os

from tests import collector_kit as kit


def probe(target: dict, context) -> tuple[str, str, dict[str, float]]:
    """Run one probe as the agent does: its status (ok, down), its reason, and its series by name
    (a phase's duration as `vigil_probe_duration_seconds:connect`)."""
    out = kit.collect(target, context)
    series = {s.name + "".join(f":{value}" for value in s.labels.values()): s.value for s in out.samples()}
    return out.verdict.status, out.verdict.detail, series


def open_sockets() -> int:
    """How many sockets this process holds."""
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:") for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))
