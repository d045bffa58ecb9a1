"""The vmware kind's fixtures: its conformance target, on the lab's vcsim (tests/lab/vcsim.py)."""

from __future__ import annotations

import pytest

from tests.lab.vcsim import snapshot


@pytest.fixture
def vmware_conformance(vcsim) -> dict:
    """Every family shows: a disconnected host, a red alarm and a VM snapshot are in the inventory."""
    snapshot(vcsim.connect(), "DC0_H0_VM0")
    return vcsim.target()
