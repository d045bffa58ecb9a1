"""ruff, with the security rules (S) on, is clean: each exception is justified where it is made."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import SOURCE


def test_ruff_is_clean():
    # the checkout, as a developer lints it: ruff reads files, it imports none
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], capture_output=True,
                          text=True, cwd=SOURCE, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
