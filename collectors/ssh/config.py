"""`kind: ssh`: a remote server's address, account and host key (agent.net.ssh's fields), what it runs, and
what to leave out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, PrivateAttr

from agent.net.ssh import SshFields
from agent.schema import Duration, Name, TargetConfig

# Automatic services that Windows itself leaves stopped until a trigger starts them.
WINDOWS_IDLE_SERVICES = ("sppsvc", "RemoteRegistry", "MapsBroker", "gupdate", "edgeupdate", "CDPSvc",
                         "TrustedInstaller", "WbioSrvc", "tiledatamodelsvc")


class SshConfig(TargetConfig, SshFields):
    kind: Literal["ssh"]
    os: Literal["linux", "windows"] = Field("linux", description="what the server runs: linux (a POSIX "
                                                                 "shell) or windows (PowerShell)")
    via: Name | None = Field(None, description="the name of another ssh target to jump through (its host, "
                                               "user, key and host key are used for the jump)")
    updates_every: Duration = Field(6 * 3600.0, description="how often pending updates, OS, kernel and "
                                                            "hardware are read (the inventory signal)")
    command_timeout: Duration = Field(15.0, description="how long connecting, and each remote command, may "
                                                        "take; keep it below the target's timeout")
    exclude_mountpoints: tuple[str, ...] = Field((), description="mountpoints (Windows: volume names such "
                                                                 "as D:\\) to leave out, fnmatch patterns")
    exclude_interfaces: tuple[str, ...] = Field(("lo", "veth*", "docker*", "br-*"),
                                                description="Linux network interfaces to leave out (fnmatch "
                                                            "patterns)")
    ignore_services: tuple[str, ...] = Field(WINDOWS_IDLE_SERVICES,
                                             description="Windows automatic services not to report when "
                                                         "stopped (fnmatch patterns, case-insensitive)")
    _jump: SshConfig | None = PrivateAttr(None)

    def link(self, targets: Mapping[str, TargetConfig]) -> list[tuple[tuple, str]]:
        if self.via is None:
            return []
        jump = targets.get(self.via)
        if not isinstance(jump, SshConfig):
            valid = sorted(name for name, t in targets.items() if isinstance(t, SshConfig) and name != self.name)
            return [(("via",), f"no ssh target is named `{self.via}` (ssh targets: {', '.join(valid) or 'none'})")]
        if jump.via is not None:
            return [(("via",), f"`{self.via}` has a via: of its own; jump through one host only")]
        self._jump = jump
        return []
