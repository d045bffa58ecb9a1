"""What each fault test saw, for `bench/reliability.py`'s table.

A fault test calls `fault_report(...)` with what it injected and what it observed; when
VIGIL_FAULT_REPORT names a file, every record of the run is appended to it as one JSON
line. The test still asserts the behaviour itself: the report only prints it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

REPORT = os.environ.get("VIGIL_FAULT_REPORT")


@pytest.fixture
def fault_report(request) -> Callable[..., None]:
    def record(fault: str, expected: str, observed: str, recovered_in: float | None = None,
               lost: int = 0) -> None:
        """One row: `recovered_in` seconds until healthy again (None: nothing to recover), rows lost."""
        if REPORT:
            row = {"test": request.node.nodeid, "fault": fault, "expected": expected, "observed": observed,
                   "recovered_in": recovered_in, "lost": lost}
            with open(REPORT, "a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")

    return record


def pytest_addoption(parser):
    parser.addoption("--faults-only", action="store_true",
                     help="run only the tests that record a fault_report row (bench/reliability.py)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--faults-only"):
        chosen = [item for item in items if "fault_report" in getattr(item, "fixturenames", ())]
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = chosen
