"""`kind: host`: the monitoring host itself."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.schema import TargetConfig


class HostConfig(TargetConfig):
    kind: Literal["host"]
    exclude_mountpoints: tuple[str, ...] = Field((), description="mountpoints to leave out (fnmatch patterns)")
    exclude_interfaces: tuple[str, ...] = Field(("lo", "veth*", "docker*", "br-*"),
                                                description="network interfaces to leave out (fnmatch patterns)")
