"""The nut kind's fixtures: its conformance target, on the lab's upsd (tests/lab/nut.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def nut_conformance(nut_lab) -> dict:
    """A unit on mains with every variable vigil maps: every family `kind: nut` declares."""
    return nut_lab.target("alarm")
