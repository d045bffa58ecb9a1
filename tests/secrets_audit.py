"""The whole test run leaks none of the lab's secrets: a session-end audit.

Every test's captured output and log, every agent log (`agent*.log`, what start_agent
writes) and every state database under the run's temporary directory is searched for the
lab peers' credentials, as they are and as they appear inside a URL. A hit fails the run
and names the file or test. tests/test_secrets.py drives every output (pages, /metrics,
/status.json, `once` and `report` in every format) through one agent; this audit covers
what all the other tests made the agent write.
"""

from __future__ import annotations

import fnmatch
import os
import urllib.parse
from pathlib import Path

import pytest

_leaks: list[str] = []


def lab_secrets() -> tuple[str, ...]:
    """The lab's credentials, distinctive enough that a hit is a leak, never a coincidence."""
    from tests.kinds.m365.fixtures import SECRET as GRAPH_SECRET
    from tests.lab import azurite, backup_tools, nut, snmpsim, vcsim

    keys = {key for _, auth, _, priv in snmpsim.USERS.values() for key in (auth, priv)}
    plain = {backup_tools.PASSWORD, backup_tools.MULTI_LINE_PASSWORD, nut.PASSWORD, vcsim.PASSWORD,
             azurite.ACCOUNT_KEY, GRAPH_SECRET, *keys}
    return tuple(sorted({form for secret in plain for form in forms(secret)}))


def forms(secret: str) -> set[str]:
    """A secret as text shows it: inside a URL percent-encoded (user:p%40ss@host); a multi-line one escaped on
    one line (repr, JSON, a log line), or line by line."""
    return {secret, urllib.parse.quote(secret, safe=""), secret.replace("\n", "\\n"), *secret.splitlines()}


def found_in(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        return [secret for secret in lab_secrets() if secret.encode() in text]
    return [secret for secret in lab_secrets() if secret in text]


def _audited_files(basetemp: Path) -> list[Path]:
    """The agents' logs and state databases; a folder that vanishes meanwhile (another run prunes it) is skipped."""
    found = []
    for folder, _, names in os.walk(basetemp):
        found += [Path(folder, name) for name in names if fnmatch.fnmatch(name, "agent*.log")
                  or name in ("vigil.db", "vigil.db-wal") or name.startswith("vigil.db.corrupt-")]
    return found


def pytest_runtest_logreport(report):
    for section, text in report.sections:
        if hits := found_in(text):
            _leaks.append(f"{report.nodeid} ({section}): {', '.join(hits)}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    basetemp = getattr(session.config, "_tmp_path_factory", None)
    basetemp = basetemp and basetemp._basetemp
    if basetemp is not None:
        for path in _audited_files(Path(basetemp)):
            try:
                if hits := found_in(path.read_bytes()):
                    _leaks.append(f"{path}: {', '.join(hits)}")
            except OSError:
                continue
    if _leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_sep("=", "secrets audit: the lab's secrets appeared in the run's output", red=True)
            for leak in _leaks:
                reporter.write_line(leak)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
