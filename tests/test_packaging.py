"""The wheel carries every file of the packages, not only their modules.

The SSH collector's shell and PowerShell scripts were once left out of the wheel: every
`kind: ssh` target failed once installed, while the tests, which imported the checkout,
passed. `make test` runs the suite against the installed wheel (tests/wheel_suite.sh); this
checks the files no test happens to open too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import INSTALLED, PACKAGES, PACKAGES_DIR, ROOT, SOURCE


def built_wheel(tmp_path: Path) -> Path:
    """The wheel `make test` built and installed; run alone, one built from the tracked files."""
    if suite_wheel := os.environ.get("VIGIL_SUITE_WHEEL"):
        return Path(suite_wheel)
    tree = tmp_path / "src"
    for name in tracked():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SOURCE / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path),
                    str(tree)], check=True, timeout=300)
    [wheel] = tmp_path.glob("vigil-*.whl")
    return wheel


def tracked(*paths: str) -> list[str]:
    done = subprocess.run(["git", "-C", str(SOURCE), "ls-files", "-z", "--", *paths], capture_output=True,
                          check=True)
    return done.stdout.decode().split("\0")[:-1]


def test_the_wheel_holds_every_tracked_file_of_the_packages(tmp_path):
    files = tracked(*PACKAGES)
    assert "collectors/ssh/linux_poll.sh" in files
    with zipfile.ZipFile(built_wheel(tmp_path)) as wheel:
        missing = sorted(set(files) - set(wheel.namelist()))
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"


@pytest.mark.skipif(not INSTALLED, reason="the installed suite's own guard: run it with `make test`")
def test_the_suite_reaches_the_installed_packages_only():
    assert PACKAGES_DIR == Path(sysconfig.get_path("purelib")).resolve()
    assert not [package for package in PACKAGES if (ROOT / package).exists()], "the tests' tree has no packages"
    # an agent started from the checkout, where `python -m` would find the checkout's packages
    done = subprocess.run([sys.executable, "-m", "agent.cli", "version"], cwd=SOURCE, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "not from the installed wheel" in done.stderr, done.stderr
