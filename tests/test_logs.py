"""Logs: priorities and no timestamps on the journal stream, timestamps elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

EMIT = ("import logging; from agent import logs; logs.setup(); "
        "logging.getLogger('vigil.x').warning('disk full mount=/srv')")


def run_with_stderr_to(path, env):
    with open(path, "w") as stderr:
        subprocess.run([sys.executable, "-c", EMIT], stderr=stderr, cwd=ROOT, env={**os.environ, **env}, check=True)
    return path.read_text()


def test_under_journald_lines_carry_a_priority_and_no_timestamp(tmp_path):
    log = tmp_path / "stderr"
    log.touch()
    stat = os.stat(log)
    line = run_with_stderr_to(log, {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})
    assert line == "<4>vigil.x: disk full mount=/srv\n"


def test_elsewhere_lines_carry_a_timestamp_and_level(tmp_path):
    line = run_with_stderr_to(tmp_path / "stderr", {"JOURNAL_STREAM": "1:2"})
    assert line.endswith(" WARNING vigil.x: disk full mount=/srv\n") and line[:4].isdigit()


def test_http_requests_are_not_logged_one_by_one(tmp_path):
    code = ("import logging; from agent import logs; logs.setup(); "
            "logging.getLogger('httpx').info('HTTP Request: GET https://api.meraki.com/api/v1/organizations'); "
            "logging.getLogger('httpx').warning('something unusual')")
    with open(tmp_path / "stderr", "w") as stderr:
        subprocess.run([sys.executable, "-c", code], stderr=stderr, cwd=ROOT,
                       env={**os.environ, "JOURNAL_STREAM": "1:2"}, check=True)
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING httpx: something unusual")
