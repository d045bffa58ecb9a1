"""Debian's headless Chromium, to look at the status page as an administrator's browser does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.lab.harness import need

# Without the background-networking flags Chromium keeps dialling out on a closed network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(url: str, profile: Path, *, screenshot: Path | None = None, size: str = "1280,900") -> str:
    """The page's DOM after scripts ran (and a screenshot if asked), as Chromium renders it."""
    binary = need("chromium", "apt-get install chromium")
    argv = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}"]
    argv += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
