"""Logs: priorities and no timestamps on the journal stream, UTC timestamps elsewhere, one line per
record, tracebacks only with --debug, text or JSON, redacted either way."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time

from agent import logs
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


def emit(tmp_path, code: str, *flags: str, env: dict | None = None) -> list[str]:
    """Run `code` after the CLI's own log setup with these flags; the stderr lines."""
    script = ("import logging, sys; from agent import cli, logs; args = cli._parser().parse_args(sys.argv[1:]); "
              "logs.setup(args.debug, args.log_level, args.log_format or 'text'); log = logging.getLogger('vigil.x')\n"
              + code)
    with open(tmp_path / "stderr", "w") as stderr:
        subprocess.run([sys.executable, "-c", script, *flags], stderr=stderr, cwd=ROOT,
                       env={**os.environ, "JOURNAL_STREAM": "1:2", **(env or {})}, check=True)
    return (tmp_path / "stderr").read_text().splitlines()


FAIL = ("try:\n    open('/nonexistent/x')\n"
        "except OSError:\n    log.exception('reload failed\\npart-way job=%s', 'nas')\n")


def test_timestamps_are_utc_iso_8601_with_their_offset(tmp_path):
    [line] = emit(tmp_path, "log.warning('x')", "version")
    stamp = line.split(" ", 1)[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stamp), line
    moment = datetime.datetime.fromisoformat(stamp)
    assert abs(moment.timestamp() - time.time()) < 3600


def test_a_record_is_one_line_and_a_traceback_needs_debug(tmp_path):
    [line] = emit(tmp_path, FAIL, "version")
    assert line.endswith('ERROR vigil.x: reload failed\\npart-way job=nas '
                         'error="FileNotFoundError: [Errno 2] No such file or directory: \'/nonexistent/x\'"')
    assert "Traceback" not in line
    [debug] = emit(tmp_path, FAIL, "--debug", "version")
    assert "reload failed\\npart-way job=nas\\nTraceback (most recent call last):\\n" in debug
    assert debug.endswith("FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/x'")


def test_log_level_and_format_are_taken_before_or_after_any_command(tmp_path):
    code = "log.debug('d'); log.info('i'); log.warning('w'); log.error('e')"
    assert [line.split()[1] for line in emit(tmp_path, code, "once", "--log-level", "warning")] == ["WARNING", "ERROR"]
    assert len(emit(tmp_path, code, "--log-level", "debug", "docs", "metrics")) == 4
    assert len(emit(tmp_path, code, "alert", "test", "--alertmanager", "x", "--log-level", "error")) == 1
    assert all(json.loads(line) for line in emit(tmp_path, code, "report", "backups", "--log-format", "json"))


def test_json_lines_carry_time_level_logger_message_and_the_fields(tmp_path):
    code = "log.warning('backup status changed backup=nas status=missed detail=\"no snapshot since 01:00\"')\n" + FAIL
    first, second = map(json.loads, emit(tmp_path, code, "--log-format", "json", "run"))
    assert first == {"time": first["time"], "level": "warning", "logger": "vigil.x",
                     "message": 'backup status changed backup=nas status=missed detail="no snapshot since 01:00"',
                     "backup": "nas", "status": "missed", "detail": "no snapshot since 01:00"}
    assert first["time"].endswith("+00:00")
    assert second["message"] == "reload failed\npart-way job=nas" and second["job"] == "nas"
    assert second["exception"].startswith("FileNotFoundError")


def test_a_field_never_overwrites_the_record_itself():
    assert logs.fields('level=x a=1 b="q \\"x\\"" path=/a,b') == {"level": "x", "a": "1", "b": 'q "x"', "path": "/a"}


def test_redaction_applies_to_both_formats(tmp_path):
    code = "log.warning('GET https://u:hunter22@h/x?sig=abcdef token=t0ps3cret')"
    for form in ("text", "json"):
        [line] = emit(tmp_path, code, "--log-format", form, "version")
        assert "hunter22" not in line and "abcdef" not in line and "t0ps3cret" not in line and "***" in line
    assert json.loads(line)["token"] == "***"


def test_under_journald_json_keeps_the_priority_prefix(tmp_path):
    log = tmp_path / "stderr"
    log.touch()
    stat = os.stat(log)
    with open(log, "w") as stderr:
        subprocess.run([sys.executable, "-c", EMIT.replace("logs.setup()", "logs.setup(form='json')")], stderr=stderr,
                       cwd=ROOT, env={**os.environ, "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}, check=True)
    line = log.read_text()
    assert line.startswith("<4>{") and json.loads(line[3:])["mount"] == "/srv"
