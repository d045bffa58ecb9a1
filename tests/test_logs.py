"""Logs: priorities and no timestamps on the journal stream, UTC timestamps elsewhere, one line per
record, tracebacks only with --debug, text or JSON, redacted either way."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import subprocess
import sys
import time

from hypothesis import given
from hypothesis import strategies as st

from agent import logs
from tests.bad_input import JSON_VALUES  # and its derandomized hypothesis profile
from tests.conftest import ROOT, vigil_argv

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


def test_every_value_reaches_the_json_whole_however_the_call_site_formats_it(tmp_path):
    """`%r` (a Python repr, single-quoted), `%s` of a text with spaces, quotes, a backslash or a newline:
    the value after `key=` is written in the one quoting the parser reads."""
    code = ("log.warning('backup missed job=%s detail=%r error=%s path=%s', 'nas', \"no 'snapshot' since 01:00\", "
            "'LocationError: cannot list /srv/a b: \"gone\"', 'C:\\\\dumps\\nnext')")
    [line] = emit(tmp_path, code, "--log-format", "json", "version")
    document = json.loads(line)
    assert document["job"] == "nas"
    assert document["detail"] == "no 'snapshot' since 01:00"
    assert document["error"] == 'LocationError: cannot list /srv/a b: "gone"'
    assert document["path"] == "C:\\dumps\nnext"
    [text] = emit(tmp_path, code, "version")
    assert 'detail="no \'snapshot\' since 01:00"' in text and "job=nas " in text


def test_libraries_log_only_warnings_unless_debug(tmp_path):
    """Whichever library: a level on every logger that is not vigil's, not a list of names."""
    code = ("for name in ('azure.core.pipeline.policies.http_logging_policy', 'botocore.endpoint', 'urllib3', "
            "'msal.application', 'pysnmp', 'pyVmomi', 'some.future.library'):\n"
            "    logging.getLogger(name).info('Request URL: x'); logging.getLogger(name).warning('%s says so', name)\n"
            "log.info('vigil itself'); logging.getLogger('checks.job').info('backup ok again job=nas')\n")
    lines = [line.split(" ", 1)[1] for line in emit(tmp_path, code, "version")]  # without the time
    assert [line for line in lines if line.startswith("INFO ")] == ["INFO vigil.x: vigil itself",
                                                                    "INFO checks.job: backup ok again job=nas"]
    assert sum(line.startswith("WARNING ") for line in lines) == 7
    debug = emit(tmp_path, code, "--log-level", "debug", "version")
    assert sum("Request URL: x" in line for line in debug) == 7


AZURE = """
state_dir: {state}
backups:
  - name: azure-nightly
    schedule: "0 1 * * *"
    deadline: 4h
    primary: {{kind: azure_blob, account_url: "{azure}", container: backups, ca_file: {ca},
              credential: "${{env:T_AZURE_SAS}}"}}
"""


def test_an_agent_reading_azure_blob_logs_only_its_own_lines_with_whole_values(tmp_path):
    """The Azure SDK's http_logging_policy logs every request and response at INFO, over several lines:
    through a real Azurite, the agent's log holds its own lines only, each value whole."""
    from tests.kinds.backups.test_source_azure_blob import sas
    from tests.lab.azurite import azurite
    from tests.lab.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    with azurite(tmp_path / "azurite", pki) as blob:
        container = blob.service().create_container("backups")
        config = tmp_path / "vigil.yaml"
        config.write_text(AZURE.format(state=tmp_path / "state", azure=blob.account_url, ca=blob.ca_file))
        done = subprocess.run(vigil_argv("--log-format", "json", "once", "-c", str(config), "--format", "json"),
                              capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env={**os.environ, "T_AZURE_SAS": sas(blob, container)})
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert records and {record["logger"].split(".")[0] for record in records} <= {"agent", "checks", "vigil"}, \
        done.stderr
    [job] = json.loads(done.stdout)
    assert job["status"] == "missed" and " " in job["detail"], job
    [change] = [record for record in records if record["message"].startswith("backup missed")]
    assert change["job"] == "azure-nightly" and change["detail"] == job["detail"], change


@given(value=st.one_of(st.text(), JSON_VALUES), conversion=st.sampled_from("sr"),
       after=st.sampled_from(["", " next", ": glued", ", more", ")"]))
def test_any_value_a_call_site_logs_reads_back_whole(value, conversion, after):
    record = logging.LogRecord("vigil.x", logging.WARNING, __file__, 1, f"event key=%{conversion}{after} n=%d",
                               (value, 3), None)
    expected = value if isinstance(value, str) else (repr(value) if conversion == "r" else str(value))
    assert logs.fields(logs.render(record)) == {"key": expected, "n": "3"}
