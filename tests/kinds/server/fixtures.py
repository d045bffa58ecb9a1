"""The host collector's fixtures: a systemd Debian host, and its conformance target."""

from __future__ import annotations

import os

import pytest

from collectors.server import collector as host


@pytest.fixture
def systemd_host(tmp_path, monkeypatch):
    """A systemd host with two failed units, a pending reboot and an unsynchronised clock, on Debian."""
    runtime = tmp_path / "run-systemd-system"
    runtime.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text("#!/bin/sh\n"
                         "[ \"$2\" = --state=failed ] || exit 1\n"
                         "echo 'backup.service loaded failed failed Nightly backup'\n"
                         "echo 'certbot.service loaded failed failed Certbot renew'\n")
    systemctl.chmod(0o755)
    timedatectl = bin_dir / "timedatectl"
    timedatectl.write_text("#!/bin/sh\n[ \"$*\" = 'show -p NTPSynchronized --value' ] && echo no\n")
    timedatectl.chmod(0o755)
    (tmp_path / "reboot-required").write_text("*** System restart required ***\n")
    (tmp_path / "debian_version").write_text("12.8\n")
    monkeypatch.setattr(host, "SYSTEMD_RUNTIME", runtime)
    monkeypatch.setattr(host, "REBOOT_REQUIRED_FILE", tmp_path / "reboot-required")
    monkeypatch.setattr(host, "DEBIAN_VERSION_FILE", tmp_path / "debian_version")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


@pytest.fixture
def host_conformance(systemd_host):
    """This machine as a systemd Debian host: every family shows."""
    return {"name": "me", "kind": "host"}
