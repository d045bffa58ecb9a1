"""`vigil once`, `version` and `docs`: what an admin runs by hand."""

from __future__ import annotations

import json
import subprocess

from agent import __version__
from agent.cli import main
from tests.lab.harness import need


def test_once_prints_text_json_and_prometheus(write_config, capsys):
    config = str(write_config("targets:\n  - {name: me, kind: host}\n"))
    assert main(["once", "-c", config]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ok      me (host)") and "vigil_server_memory_total_bytes{} " in text

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
    assert "FAILED  ups (failing)" in out and "ConnectionRefusedError: [Errno 111] Connection refused" in out
    assert main(["once", "-c", config, "--target", "ok"]) == 0


def test_once_with_an_unknown_target_lists_the_known_ones(write_config, capsys):
    config = str(write_config("targets:\n  - {name: me, kind: host}\n"))
    assert main(["once", "-c", config, "--target", "you"]) == 2
    assert "no target or backup job named `you`" in capsys.readouterr().err


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"vigil {__version__} ")


def test_docs_metrics_writes_the_catalogue(tmp_path, capsys):
    out = tmp_path / "metrics.md"
    assert main(["docs", "metrics", "--output", str(out)]) == 0
    assert "`vigil_server_cpu_seconds_total` | counter | `mode`" in out.read_text()
