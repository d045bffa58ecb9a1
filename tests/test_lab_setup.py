"""tests/lab/setup.sh on a fresh Debian: it installs npm, which azurite comes from, when there is none.

Run with apt-get and dpkg-query faked (nodejs and npm not installed, every other package
installed), on this machine's lab: only what setup.sh asks apt for is observed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

FAKE_DPKG_QUERY = """#!/bin/sh
case "$3" in nodejs|npm) exit 1 ;; *) printf 'install ok installed' ;; esac
"""


def setup_sh(tmp_path: Path, *hidden: str) -> str:
    """Run setup.sh with a PATH of every program on this one's but `hidden`; what apt-get was asked."""
    programs = tmp_path / "bin"
    programs.mkdir()
    calls = tmp_path / "apt-get.calls"
    (programs / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (programs / "dpkg-query").write_text(FAKE_DPKG_QUERY)
    for fake in programs.iterdir():
        fake.chmod(0o755)
    for directory in filter(os.path.isdir, os.environ["PATH"].split(os.pathsep)):
        for entry in os.scandir(directory):
            link = programs / entry.name
            first = not link.is_symlink() and not link.exists()  # as PATH finds it: the first one
            if first and entry.name not in hidden and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    done = subprocess.run(["bash", str(ROOT / "tests" / "lab" / "setup.sh")], capture_output=True, text=True,
                          env={**os.environ, "PATH": str(programs)}, timeout=300)
    assert done.returncode == 0 and done.stdout.endswith("lab: ready\n"), done.stdout + done.stderr
    return calls.read_text() if calls.exists() else ""


def test_npm_is_installed_from_debian_when_there_is_none(tmp_path):
    assert "install -y --no-install-recommends nodejs npm\n" in setup_sh(tmp_path, "npm")


def test_an_npm_already_on_path_is_kept(tmp_path):
    assert setup_sh(tmp_path) == ""  # NodeSource's nodejs brings its own npm, which Debian's would conflict with
