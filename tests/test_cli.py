"""`vigil once`, `version` and `docs`: what an admin runs by hand."""

from __future__ import annotations

import json
import subprocess

import pytest

from agent import __version__
from agent.cli import main
from agent.statedb import StateDB
from tests.lab.harness import need


def test_once_prints_text_json_and_prometheus(write_config, capsys):
    config = str(write_config("targets:\n  - {name: me, kind: host}\n"))
    assert main(["once", "-c", config]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ok           me (host)") and "\nvigil_server_memory_total_bytes " in text
    assert "e+09" not in text and " UTC)" in text, "times are printed as dates"

    assert main(["once", "-c", config, "--format", "json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["ok"] and {s["name"] for s in result["samples"]} >= {"vigil_server_load1"}

    assert main(["once", "-c", config, "--format", "prometheus"]) == 0
    exposition = capsys.readouterr().out
    assert 'vigil_up{kind="host",target="me"} 1.0' in exposition
    lint = subprocess.run([need("promtool"), "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_once_exits_1_when_a_target_fails_and_names_it(write_config, capsys, test_kinds):
    config = str(write_config("targets:\n  - {name: ok, kind: counting}\n  - {name: ups, kind: failing}\n"))
    assert main(["once", "-c", config]) == 1
    out = capsys.readouterr().out
    assert "FAILED       ups (failing)" in out and "Connection refused" in out and "Error" not in out
    assert main(["once", "-c", config, "--target", "ok"]) == 0


def test_once_with_an_unknown_target_lists_the_known_ones(write_config, capsys):
    config = str(write_config("targets:\n  - {name: me, kind: host}\n"))
    assert main(["once", "-c", config, "--target", "you"]) == 2
    assert "no target or backup job named `you`" in capsys.readouterr().err


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"vigil {__version__} ")
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith(f"vigil {__version__} ")


@pytest.mark.parametrize("command", ["run", "check-config", "once", "verify", "drill", "alert", "report", "docs"])
def test_every_command_explains_itself_with_an_example(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "example:\n  vigil " + command in text


BACKUPS = """
state_dir: {state}
backups:
  - name: dumps
    schedule: "0 1 * * *"
    deadline: 4h
    primary: {kind: files, path: DUMPS, pattern: "db-*"}
    verify: {every: 7d}
"""


def test_once_prints_each_backup_verdict_and_exits_1_unless_all_are_ok(write_config, tmp_path, capsys):
    config = str(write_config(BACKUPS.replace("DUMPS", str(tmp_path / "missing"))))
    assert main(["once", "-c", config]) == 1
    out = capsys.readouterr().out
    assert out.startswith("UNREACHABLE  dumps (backup)") and "cannot list" in out
    assert main(["once", "-c", config, "--format", "json"]) == 1
    (job,) = json.loads(capsys.readouterr().out)
    assert (job["ok"], job["status"]) == (True, "unreachable") and "cannot list" in job["detail"]


def test_verify_runs_the_checks_now_and_records_them(write_config, tmp_path, capsys):
    import hashlib

    dumps = tmp_path / "dumps"
    dumps.mkdir()
    (dumps / "db-1").write_bytes(b"dump")
    (dumps / "db-1.sha256").write_text(hashlib.sha256(b"dump").hexdigest() + "  db-1\n")
    config = str(write_config(BACKUPS.replace("DUMPS", str(dumps))))
    assert main(["verify", "dumps", "-c", config]) == 0
    assert capsys.readouterr().out.startswith("ok               dumps primary: ")
    (dumps / "db-1").write_bytes(b"dumq")
    assert main(["verify", "dumps", "-c", config]) == 1
    assert capsys.readouterr().out.startswith("DAMAGED          dumps primary: ")
    db = StateDB(tmp_path / "state")
    assert [ok for (ok,) in db.query("SELECT ok FROM backup_verifications ORDER BY verified_at")] == [1, 0]
    db.close()
    assert main(["verify", "nothing", "-c", config]) == 2


def test_run_listens_where_the_command_line_says(write_config, start_agent, tmp_path):
    from tests.conftest import RunningAgent, vigil_argv
    from tests.lab.harness import Peer, free_port, wait_until

    config = write_config("listen: 127.0.0.1:1\nstate_dir: {state}\ntargets:\n  - {name: me, kind: host}\n")
    port = free_port()
    peer = Peer(vigil_argv("run", "-c", str(config), "--listen", f"127.0.0.1:{port}"), tmp_path / "agent.log")
    try:
        agent = RunningAgent(peer, f"http://127.0.0.1:{port}", config)
        wait_until(lambda: agent.get("/-/ready")[0] == 200, 20, "the agent on the --listen port")
    finally:
        peer.stop()
    assert main(["run", "-c", str(config), "--listen", "nowhere"]) == 2


def test_docs_metrics_writes_the_catalogue(tmp_path, capsys):
    out = tmp_path / "metrics.md"
    assert main(["docs", "metrics", "--output", str(out)]) == 0
    assert "`vigil_server_cpu_seconds_total` | counter | `mode`" in out.read_text()
