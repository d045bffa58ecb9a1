"""Shared fixtures: the agent as a real process, configs written to temporary files."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import agent
from tests.lab.harness import Peer, free_port, http_get, wait_until

ROOT = Path(__file__).resolve().parent.parent  # deploy/, docs/, tests/: under `make test`, a copy without PACKAGES
SOURCE = Path(os.environ.get("VIGIL_SUITE_SOURCE", ROOT))  # the checkout the wheel and install.sh build from
PACKAGES = ("agent", "collectors", "checks", "exporters")  # what the wheel installs
PACKAGES_DIR = Path(agent.__file__).resolve().parent.parent  # where they are imported from: read their files here
INSTALLED = "VIGIL_SUITE_WHEEL" in os.environ  # tests/wheel_suite.sh: the suite tests the installed wheel
if INSTALLED and "vigil_installed_only" not in sys.modules:
    raise RuntimeError("tests/wheel_suite.sh's guard is not loaded: run the suite with `make test`")
os.environ.setdefault("VIGIL_STRICT_METRICS", "1")  # a sample that does not match its catalogue fails the test

# The lab's peers shared by many tests, and each kind's fixtures (tests/kinds/<family>/fixtures.py), its
# `<kind>_conformance` target for tests/test_conformance.py included.
pytest_plugins = [
    "tests.lab.vcsim",
    "tests.lab.snmpsim",
    "tests.lab.nut",
    "tests.lab.samba",
    *(f"tests.kinds.{family}.fixtures"
      for family in ("server", "ssh", "ups", "nut", "vmware", "meraki", "m365", "probes")),
    "tests.fault_report",
    "tests.secrets_audit",
]


def vigil_argv(*args: str, test_kinds: bool = False) -> list[str]:
    """The vigil command; with test_kinds, the test-only collectors are registered too."""
    return [sys.executable, "-m", "tests.run_agent" if test_kinds else "agent.cli", *args]


class RunningAgent:
    def __init__(self, peer: Peer, url: str, config: Path):
        self.peer, self.url, self.config = peer, url, config

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(self.url + path)

    def metrics(self) -> str:
        return self.get("/metrics")[1].decode()


@pytest.fixture(autouse=True)
def children_allowed(monkeypatch):
    """`vigil once` run in-process ends by refusing new child tools; each test starts afresh."""
    from agent import children

    monkeypatch.setattr(children, "_stopping", False)


@pytest.fixture(autouse=True)
def own_log_handlers():
    """`main()` run in-process installs handlers on pytest's captured streams and sets levels: put the
    old ones back."""
    import logging

    from agent.logs import OWN_LOGGERS

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    own = {name: logging.getLogger(name).level for name in OWN_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, before in own.items():
        logging.getLogger(name).setLevel(before)


@pytest.fixture(autouse=True)
def own_secrets(monkeypatch):
    """Each test masks only the secrets it resolves itself, and keeps only the names it configures
    (the registry is process-wide)."""
    from agent import redact

    monkeypatch.setattr(redact, "_masks", redact._Masks())


@pytest.fixture
def context(tmp_path):
    """What the agent lends a job: a real clock, rate limits, and a state dir with its database."""
    from agent.clock import Clock
    from agent.collector import Context
    from agent.ratelimit import RateLimits
    from agent.statedb import StateDB

    clock = Clock()
    db = StateDB(tmp_path / "state")
    yield Context(clock, RateLimits(clock), tmp_path / "state", db)
    db.close()


@pytest.fixture
def test_kinds(monkeypatch):
    """The test-only collectors (tests/fake_collectors.py), listed in the registry."""
    from agent import registry
    from tests.fake_collectors import KINDS

    for kind, path in KINDS.items():
        monkeypatch.setitem(registry.COLLECTORS, kind, path)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config; `{port}` and `{state}` are filled with a free port and a state dir."""

    def write(text: str, name: str = "vigil.yaml", port: int | None = None) -> Path:
        path = tmp_path / name
        text = text.replace("{port}", str(port or free_port())).replace("{state}", str(tmp_path / "state"))
        path.write_text(text)
        return path

    return write


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., RunningAgent]]:
    """Start `vigil run` on a config and wait until /-/ready answers."""
    agents: list[Peer] = []

    def start(config: Path, env: dict[str, str] | None = None, test_kinds: bool = False,
              options: tuple[str, ...] = ()) -> RunningAgent:
        """`options` go before `run` (`--debug`, `--log-format json`)."""
        import yaml

        listen = yaml.safe_load(config.read_text()).get("listen", "127.0.0.1:9839")
        argv = vigil_argv(*options, "run", "-c", str(config), test_kinds=test_kinds)
        peer = Peer(argv, tmp_path / f"agent{len(agents)}.log", env, cwd=ROOT)
        agents.append(peer)
        agent = RunningAgent(peer, f"http://{listen}", config)
        wait_until(lambda: agent.get("/-/ready")[0] == 200 if peer.alive() else _died(peer),
                   20, "the agent to be ready")
        return agent

    yield start
    for peer in agents:
        peer.stop()


def _died(peer: Peer) -> None:
    pytest.fail(f"the agent exited with {peer.process.returncode}:\n{peer.output()[-3000:]}")
