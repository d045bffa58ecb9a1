"""A real Prometheus scrapes a real agent: the exposition is valid and vigil_up arrives."""

from __future__ import annotations

import subprocess

from tests.lab.harness import need
from tests.lab.prometheus import prometheus


def test_prometheus_scrapes_the_agent(start_agent, write_config, tmp_path):
    agent = start_agent(write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                                     "  - {name: monitor-01, kind: host, interval: 1s}\n"))
    address = agent.url.removeprefix("http://")
    with prometheus(tmp_path, [{"job_name": "vigil", "static_configs": [{"targets": [address]}]}]) as prom:
        prom.wait_for('up{job="vigil"} == 1')
        (up,) = prom.wait_for('vigil_up{target="monitor-01"} == 1')
        assert up["metric"]["kind"] == "host"
        assert prom.wait_for('vigil_server_memory_total_bytes{target="monitor-01"} > 0')
        assert prom.wait_for('rate(vigil_server_cpu_seconds_total{target="monitor-01",mode="idle"}[5s]) >= 0',
                             timeout=20)


def test_the_exposition_passes_promtool(start_agent, write_config):
    agent = start_agent(write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                                     "  - {name: a, kind: host, interval: 1s}\n  - {name: b, kind: host}\n"))
    from tests.lab.harness import wait_until

    wait_until(lambda: agent.metrics().count("vigil_up{") == 2, 10, "both targets")
    lint = subprocess.run([need("promtool"), "check", "metrics"], input=agent.metrics(),
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_backup_verdicts_reach_prometheus(start_agent, write_config, tmp_path, monkeypatch):
    import json

    from tests.lab.backup_tools import PASSWORD, ResticRepo
    from tests.lab.harness import http_get

    repo = ResticRepo(tmp_path)
    repo.backup()
    (tmp_path / "restic.pass").write_text(PASSWORD + "\n")
    config = write_config(f"""
listen: 127.0.0.1:{{port}}
state_dir: {{state}}
backups:
  - name: fileserver-nightly
    schedule: "0 1 * * *"
    timezone: Europe/Brussels
    deadline: 4h
    interval: 2s
    timeout: 1500ms
    primary: {{kind: restic, repository: {repo.repository}, password: "${{file:{tmp_path}/restic.pass}}"}}
""")
    agent = start_agent(config)
    address = agent.url.removeprefix("http://")
    with prometheus(tmp_path, [{"job_name": "vigil", "static_configs": [{"targets": [address]}]}]) as prom:
        (series,) = prom.wait_for('vigil_backup_status{backup="fileserver-nightly"} == 1')
        assert series["metric"]["status"] == "ok" and series["metric"]["job"] == "vigil"
        assert prom.wait_for('vigil_backup_size_bytes{backup="fileserver-nightly",location="primary"} > 0')
        # health and data share the `backup` label: they join without label_replace
        assert prom.wait_for('vigil_up{kind="backup"} * on (backup) group_right '
                             'vigil_backup_status{status="ok"} == 1')
    board = json.loads(http_get(agent.url + "/status.json")[1])["boards"]["Backups"]
    assert board[0]["name"] == "fileserver-nightly" and board[0]["status"] == "ok"
    assert PASSWORD not in agent.metrics() + agent.peer.output()
