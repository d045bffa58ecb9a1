"""The data flows one way: `agent` imports no concrete kind, `exporters` no collector or check.

Read from the installed packages (the wheel under `make test`)."""

from __future__ import annotations

import ast

from tests.conftest import PACKAGES_DIR


def imported_packages(package: str) -> dict[str, set[str]]:
    found = {}
    for path in (PACKAGES_DIR / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
        found[str(path.relative_to(PACKAGES_DIR))] = names
    return found


def test_the_core_reaches_kinds_only_through_the_registry():
    for package in ("agent", "exporters"):
        for path, names in imported_packages(package).items():
            assert not names & {"collectors", "checks"}, f"{path} imports {names & {'collectors', 'checks'}}"


def test_collectors_and_checks_know_nothing_of_the_exporters():
    for package in ("collectors", "checks"):
        for path, names in imported_packages(package).items():
            assert "exporters" not in names, path
