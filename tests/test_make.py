"""The Makefile as a newcomer uses it: `make run` keeps its state beside the checkout.

As root, the agent's default state directory is /var/lib/vigil, the installed service's own:
`make run` must never write the service's history.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.lab.harness import Peer, free_port, http_get, wait_until


def make_run(directory: Path, config: Path, port: int) -> None:
    """`make run CONFIG=...` in `directory` (as if it were the checkout) until the agent is ready."""
    venv = Path(sys.prefix)  # this environment's vigil: never let make build another
    make = Peer(["make", "-f", str(ROOT / "Makefile"), "-C", str(directory), "-o", f"{venv}/.installed", "run",
                 f"VENV={venv}", f"CONFIG={config}"], directory / "make.log")
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200 if make.alive()
                   else died(make), 20, "make run's agent to be ready")
    finally:
        os.killpg(make.pid, signal.SIGTERM)  # make and the agent it started
        make.stop()


def died(make: Peer) -> None:
    pytest.fail(f"make run exited:\n{make.output()[-3000:]}")


def test_make_run_keeps_the_state_under_the_checkout_unless_the_config_says(tmp_path):
    checkout, port = tmp_path / "checkout", free_port()
    checkout.mkdir()
    config = tmp_path / "vigil.yaml"
    config.write_text(f"listen: 127.0.0.1:{port}\n")
    make_run(checkout, config, port)
    assert (checkout / ".state" / "vigil.db").is_file()
    assert f"Starting vigil with {config}" in (checkout / "make.log").read_text()

    (checkout / ".state" / "vigil.db").unlink()
    config.write_text(f"listen: 127.0.0.1:{port}\nstate_dir: {tmp_path / 'own'}\n")
    make_run(checkout, config, port)
    assert (tmp_path / "own" / "vigil.db").is_file() and not (checkout / ".state" / "vigil.db").exists()
