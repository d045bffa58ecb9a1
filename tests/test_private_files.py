"""Files that hold what vigil knows or reads stay private: the state it creates is its user's alone whatever
the umask, and a secret or key file others can read, or reached through a link, is warned of as ssh would."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import wait_until
from tests.test_lifecycle import metric


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_the_state_dir_and_database_are_private_whatever_the_umask(start_agent, write_config, tmp_path,
                                                                   fault_report):
    """Outside systemd (whose unit sets UMask=0077) the state dir was 0755 and vigil.db/-wal/-shm 0644."""
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                          "  - {name: ticking, kind: counting, interval: 300ms}\n")
    umask = os.umask(0o002)  # the agent inherits it: a group-writable default
    try:
        agent = start_agent(config, test_kinds=True)
    finally:
        os.umask(umask)
    wait_until(lambda: metric(agent.metrics(), "vigil_last_success_timestamp_seconds", "ticking"), 10,
               "a success written to the state database")
    state = tmp_path / "state"
    wait_until(lambda: (state / "vigil.db-wal").exists() and (state / "vigil.db-shm").exists(), 10, "the WAL")
    modes = {path.name: mode(path) for path in (state, *state.glob("vigil.db*"))}
    assert modes == {"state": "0o700", "vigil.db": "0o600", "vigil.db-wal": "0o600", "vigil.db-shm": "0o600"}, modes
    fault_report(fault="umask 0002, no systemd", expected="state dir 0700, vigil.db and its WAL 0600",
                 observed=", ".join(f"{name} {value[2:]}" for name, value in modes.items()))
