"""The ups kind's fixtures: its conformance target, on the lab's snmpsim (tests/lab/snmpsim.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def ups_conformance(snmp_lab) -> dict:
    """A three-phase RFC 1628 unit with alarms, a self-test and line failures: every `vigil_ups_*` family."""
    return snmp_lab.v2c("rfc1628-3phase")
