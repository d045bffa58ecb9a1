"""The data flows one way: `agent` imports no concrete kind, `exporters` no collector or check,
and no module imports another that imports it back.

Read from the installed packages (the wheel under `make test`); every import counts, also one
inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from functools import cache

from tests.conftest import PACKAGES, PACKAGES_DIR, ROOT

COMPOSITION_ROOT = ("agent/daemon.py", "agent/cli.py")  # where the agent is wired together


@cache
def modules() -> dict[str, str]:
    """Every module of the packages: its dotted name -> its path under PACKAGES_DIR."""
    found = {}
    for package in PACKAGES:
        for path in (PACKAGES_DIR / package).rglob("*.py"):
            relative = path.relative_to(PACKAGES_DIR)
            name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            found[name] = relative.as_posix()
    return found


def imports(path: str) -> set[str]:
    """The modules a file imports, as dotted names (`from a import b` is `a.b` when b is a module)."""
    names = set()
    for node in ast.walk(ast.parse((PACKAGES_DIR / path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules() else node.module
                      for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each file of a package -> the top-level packages it imports."""
    return {path: {name.split(".")[0] for name in imports(path)}
            for path in modules().values() if path.startswith(f"{package}/")}


def test_the_core_reaches_kinds_only_through_the_registry():
    for package in ("agent", "exporters"):
        for path, names in imported_packages(package).items():
            assert not names & {"collectors", "checks"}, f"{path} imports {names & {'collectors', 'checks'}}"


def test_collectors_and_checks_know_nothing_of_the_exporters():
    for package in ("collectors", "checks"):
        for path, names in imported_packages(package).items():
            assert "exporters" not in names, path


def test_only_the_composition_root_imports_the_exporters():
    """The agent's core hands snapshots to the exporters, never the other way; only daemon.py and cli.py
    (which wire the web endpoint, the status page and `vigil once`'s output) know them."""
    for path, names in imported_packages("agent").items():
        assert "exporters" not in names or path in COMPOSITION_ROOT, f"{path} imports the exporters"


def strings(path: str) -> set[str]:
    return {node.value for node in ast.walk(ast.parse((PACKAGES_DIR / path).read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_the_agent_names_no_backup_kind_and_no_backup_constant():
    """The core reaches the backup jobs through their declaration alone (agent.registry.SECTIONS points to
    it): no kind their entries bring, no location kind, no other path into `checks`, no constant of theirs."""
    from agent import registry
    from checks.sources import LOCATIONS

    kinds = {*registry.job_kinds(), *LOCATIONS}
    core = [path for path in modules().values() if path.startswith("agent/")]
    for path in core:
        assert not strings(path) & kinds, f"{path} names {strings(path) & kinds}"
        constants = re.findall(r"^([A-Z_]+) *[:=]", (PACKAGES_DIR / path).read_text(), re.M)
        assert not [name for name in constants if "BACKUP" in name or "LOCATION" in name], path
    pointers = {text for path in core for text in strings(path) if re.fullmatch(r"checks\.[\w.]+:\w+", text)}
    assert pointers == set(registry.SECTIONS.values())


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: {other for other in imports(path) if other in modules() and other != name}
             for name, path in modules().items()}
    for start in graph:
        seen, path = set(), [start]
        while path:  # depth first, remembering the way back to `start`
            for following in sorted(graph[path[-1]] - seen):
                seen.add(following)
                assert following != start, f"import cycle: {' -> '.join([*path, start])}"
                path.append(following)
                break
            else:
                path.pop()


FAMILY_FILES = ("__init__.py", "config.py", "metrics.py", "collector.py", "README.md")


def families() -> list[str]:
    return sorted(path.name for path in (PACKAGES_DIR / "collectors").iterdir() if (path / "__init__.py").is_file())


def test_every_collector_family_is_one_folder_of_the_same_shape():
    """config.py (a module-level `<Kind>Config`), metrics.py (METRICS and CONDITIONS, of which the family's
    kinds each emit a part), collector.py (the Collector), README.md (the kind's page): a new kind copies one
    folder, and finds every other kind laid out alike."""
    import importlib

    from agent import registry

    loose = [path.name for path in (PACKAGES_DIR / "collectors").glob("*.py") if path.name != "__init__.py"]
    assert not loose, f"modules outside a family's folder: {loose}"
    for family in families():
        missing = [name for name in FAMILY_FILES if not (PACKAGES_DIR / "collectors" / family / name).is_file()]
        assert not missing, f"collectors/{family} lacks {missing}"
    for kind, path in registry.COLLECTORS.items():
        module, _, _ = path.partition(":")
        family = module.split(".")[1]
        assert module == f"collectors.{family}.collector", f"{kind}: {path}"
        collector = registry.collector_class(kind)
        config = importlib.import_module(f"collectors.{family}.config")
        metrics = importlib.import_module(f"collectors.{family}.metrics")
        assert getattr(config, collector.Config.__name__, None) is collector.Config, \
            f"{kind}: its Config is not a module-level class of collectors/{family}/config.py"
        assert collector.Config.__name__.endswith("Config"), kind
        assert set(collector.METRICS) <= set(metrics.METRICS) and set(collector.CONDITIONS) <= set(
            metrics.CONDITIONS), f"{kind}: its catalogue and rules are not collectors/{family}/metrics.py's"


def test_a_family_reaches_another_only_for_the_catalogue_they_share():
    """kind: ssh emits the server families and kind: nut the UPS ones: they import that family's metrics
    module, never its collector, protocol or parsing."""
    for path in modules().values():
        if not path.startswith("collectors/") or path.count("/") < 2:
            continue
        family = path.split("/")[1]
        others = {name for name in imports(path)
                  if name.startswith("collectors.") and name.split(".")[1] != family}
        assert all(name.endswith(".metrics") for name in others), f"{path} imports {others}"


def test_each_kind_s_tests_are_in_its_folder_and_the_lab_holds_no_test():
    """tests/kinds/<family>/ for a collector family (or `backups`): its tests and fixtures.py; tests/lab/ and
    tests/fakes/ hold the peers and contract fakes they run against, no test."""
    tests = ROOT / "tests"
    assert {path.name for path in (tests / "kinds").iterdir() if path.is_dir() and path.name != "__pycache__"} \
        == {*families(), "backups"}
    for folder in ("lab", "fakes"):
        assert not list((tests / folder).rglob("test_*.py")), f"tests/{folder} holds tests"
    for family in families():
        assert (tests / "kinds" / family / "fixtures.py").is_file(), f"tests/kinds/{family} has no fixtures.py"
