"""deploy/systemd/vigil.service as systemd itself reads it: verified, rated, and complete.

The agent running under this unit's sandbox is tested in test_install.py, on the installed
tree (a real systemd manager starts it there).
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT
from tests.lab.harness import need

UNIT = ROOT / "deploy" / "systemd" / "vigil.service"
MAX_EXPOSURE = 1.5  # Debian's own prometheus-node-exporter and snmp-exporter units rate 9.2


def directives(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of the unit, values in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need("systemd-analyze", "apt-get install systemd"), *args],
                          capture_output=True, text=True, timeout=60)


def test_the_sandbox_rates_at_most_1_5():
    done = analyze("security", "--offline=true", "--no-pager", str(UNIT))
    match = re.search(r"Overall exposure level for vigil\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


def test_systemd_verifies_it_without_a_complaint(tmp_path):
    """On a copy whose ExecStart= exists: /opt/vigil is made by install.sh, not here."""
    program = tmp_path / "vigil"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    copy = tmp_path / "vigil.service"
    text = UNIT.read_text()
    assert "ExecStart=/opt/vigil/bin/vigil " in text
    copy.write_text(text.replace("ExecStart=/opt/vigil/bin/vigil ", f"ExecStart={program} "))
    done = analyze("verify", "--man=no", str(copy))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_it_runs_the_agent_the_way_the_agent_expects():
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["ExecStart"] == ["/opt/vigil/bin/vigil run -c /etc/vigil/vigil.yaml"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["WatchdogSec"] and unit["Restart"] == ["on-failure"]
    # the agent gives its jobs 5 s to stop (agent.daemon.STOP_TIMEOUT): systemd must wait longer
    assert unit["TimeoutStopSec"] == ["15s"]
    assert unit["User"] == ["vigil"] and "DynamicUser" not in unit
    assert unit["StateDirectory"] == ["vigil"] and unit["ConfigurationDirectory"] == ["vigil"]


def test_secrets_and_local_repositories_are_explained_where_an_admin_looks():
    text = UNIT.read_text()
    assert re.search(r"^#\s+LoadCredential=restic:/etc/vigil/credentials/restic$", text, re.M)
    assert re.search(r"^#\s+ReadWritePaths=/srv/backup/restic$", text, re.M)


@pytest.mark.parametrize("directive, why", [
    ("ProcSubset", "it hides /proc/stat, /proc/meminfo, /proc/net/dev...: the host collector reads them"),
    ("IPAddressDeny", "the agent polls hosts and APIs anywhere"),
    ("PrivateNetwork", "the agent polls hosts and APIs anywhere"),
])
def test_what_would_break_the_agent_stays_out(directive, why):
    assert directive not in directives(UNIT.read_text()), why


def test_every_sandbox_directive_is_enabled_not_just_named():
    unit = directives(UNIT.read_text())
    for key in ("PrivateTmp", "PrivateDevices", "PrivateUsers", "PrivateMounts", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
                "ProtectHostname", "NoNewPrivileges", "RestrictSUIDSGID", "RestrictNamespaces",
                "RestrictRealtime", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC"):
        assert unit[key] == ["yes"], key
    assert unit["ProtectSystem"] == ["strict"] and unit["ProtectHome"] == ["yes"]
    assert unit["ProtectProc"] == ["invisible"] and unit["UMask"] == ["0077"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["AmbientCapabilities"] == [""]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert unit["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]



def test_the_fd_limit_leaves_room_beside_the_endpoints_connections():
    from exporters.web import MAX_CONNECTIONS

    (limit,) = directives(UNIT.read_text())["LimitNOFILE"]
    assert int(limit) >= 2 * MAX_CONNECTIONS + 1024, "the endpoint takes at most half; jobs need the rest"
