"""End to end: a backup goes missing and on-call is paged; it is made good and the page resolves.

Real agent, real restic repository, real Prometheus with the shipped alert rules, real
Alertmanager with the shipped routing (receivers pointed at a local webhook).
"""

from __future__ import annotations

import time

from tests.conftest import ROOT
from tests.lab.alertmanager import Webhook, alertmanager, routed_to
from tests.lab.backup_tools import PASSWORD, ResticRepo
from tests.lab.harness import wait_until
from tests.lab.prometheus import prometheus

RULES = sorted(str(path) for path in (ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
FAST = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
ALWAYS_OPEN = [{"name": "office-hours", "time_intervals": [{"location": "UTC"}]}]  # no day, no hours: any time


def test_a_missed_backup_pages_on_call_and_resolves(start_agent, write_config, tmp_path, capsys):
    repo = ResticRepo(tmp_path)
    snapshot = repo.backup()
    (tmp_path / "restic.pass").write_text(PASSWORD + "\n")
    agent = start_agent(write_config(f"""
listen: 127.0.0.1:{{port}}
state_dir: {{state}}
backups:
  - name: fileserver-nightly
    schedule: "0 1 * * *"
    timezone: UTC
    deadline: 4h
    interval: 2s
    timeout: 1500ms
    primary: {{kind: restic, repository: {repo.repository}, password: "${{file:{tmp_path}/restic.pass}}"}}
"""))
    webhook = Webhook()
    try:
        shipped = ROOT / "deploy" / "alertmanager" / "vigil.yml"
        with alertmanager(tmp_path / "am", routed_to(webhook, shipped, FAST)) as am_url, \
                prometheus(tmp_path / "prom", [{"job_name": "vigil", "static_configs": [
                    {"targets": [agent.url.removeprefix("http://")]}]}], RULES,
                    {"alerting": {"alertmanagers": [{"static_configs": [
                        {"targets": [am_url.removeprefix("http://")]}]}]}}) as prom:
            prom.wait_for('vigil_backup_status{backup="fileserver-nightly",status="ok"} == 1')

            repo.forget(snapshot)  # the fault: last night's backup is gone
            fault = time.monotonic()
            wait_until(lambda: webhook.alerts("oncall", "firing", "BackupMissed"), 60, "the on-call page")
            (alert, paged), *_ = webhook.alerts("oncall", "firing", "BackupMissed")
            assert alert["labels"]["backup"] == "fileserver-nightly"
            assert alert["annotations"]["summary"] == "Backup fileserver-nightly did not complete by its deadline"
            assert not webhook.alerts("daytime", "firing", "BackupMissed")

            repo.backup()  # made good
            repaired = time.monotonic()
            wait_until(lambda: webhook.alerts("oncall", "resolved", "BackupMissed"), 60, "the resolved notice")
            (_, resolved), *_ = webhook.alerts("oncall", "resolved", "BackupMissed")
    finally:
        webhook.close()
    with capsys.disabled():
        print(f"\n  paging: fault to page {paged - fault:.1f} s, repair to resolved {resolved - repaired:.1f} s")


def test_vigil_alert_test_reaches_on_call_through_the_shipped_routing(tmp_path):
    import subprocess

    from tests.conftest import vigil_argv

    webhook = Webhook()
    try:
        shipped = ROOT / "deploy" / "alertmanager" / "vigil.yml"
        with alertmanager(tmp_path / "am", routed_to(webhook, shipped, FAST) | {"time_intervals": ALWAYS_OPEN}) \
                as am_url:
            for severity, receiver in (("critical", "oncall"), ("warning", "daytime")):
                done = subprocess.run(vigil_argv("alert", "test", "--alertmanager", am_url, "--severity", severity),
                                      capture_output=True, text=True, cwd=ROOT, timeout=30)
                assert done.returncode == 0 and "sent VigilTestAlert" in done.stdout, done.stderr
                wait_until(lambda receiver=receiver: webhook.alerts(receiver, "firing", "VigilTestAlert"), 30,
                           f"the test alert at {receiver}")
            (alert, _), *_ = webhook.alerts("oncall", "firing", "VigilTestAlert")
            assert alert["labels"]["severity"] == "critical" and "path to on-call works" in \
                alert["annotations"]["summary"]
        refused = subprocess.run(vigil_argv("alert", "test", "--alertmanager", am_url), capture_output=True,
                                 text=True, cwd=ROOT, timeout=30)
        assert refused.returncode == 1 and "cannot reach Alertmanager at" in refused.stderr
    finally:
        webhook.close()


def test_warnings_wait_for_office_hours_while_critical_alerts_page_at_once(tmp_path):
    """The shipped routing, with its office hours moved so that they are closed now, then open."""
    import datetime
    import json
    import urllib.request

    import yaml

    shipped = ROOT / "deploy" / "alertmanager" / "vigil.yml"
    (office,) = yaml.safe_load(shipped.read_text())["time_intervals"]
    assert office["name"] == "office-hours" and office["time_intervals"][0]["weekdays"] == ["monday:friday"]
    days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    today = datetime.datetime.now(datetime.UTC).weekday()
    closed = [{"weekdays": [day for n, day in enumerate(days) if n not in (today, (today + 1) % 7)],
               "location": "UTC"}]  # not today, nor tomorrow should the test run past midnight
    webhook = Webhook()
    try:
        config = routed_to(webhook, shipped, FAST)
        config["time_intervals"] = [{"name": "office-hours", "time_intervals": closed}]
        with alertmanager(tmp_path / "am", config) as am_url:
            def send(name: str, severity: str) -> None:
                alert = [{"labels": {"alertname": name, "severity": severity, "area": "host", "target": "t1"}}]
                request = urllib.request.Request(f"{am_url}/api/v2/alerts", json.dumps(alert).encode(),
                                                 {"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=5).close()

            send("HostMemoryLow", "warning")
            time.sleep(3)  # a few of the warning group's flushes (group_interval 1s), all outside office hours
            send("HostDiskAlmostFull", "critical")
            wait_until(lambda: webhook.alerts("oncall", "firing", "HostDiskAlmostFull"), 30, "the on-call page")
            assert not webhook.alerts("daytime", "firing", "HostMemoryLow"), "a warning outside office hours"

            config["time_intervals"] = ALWAYS_OPEN
            (tmp_path / "am" / "alertmanager.yml").write_text(yaml.safe_dump(config))  # office hours begin
            urllib.request.urlopen(urllib.request.Request(f"{am_url}/-/reload", method="POST"), timeout=5).close()
            wait_until(lambda: webhook.alerts("daytime", "firing", "HostMemoryLow"), 30,
                       "the warning, held until office hours")
            assert len(webhook.alerts("oncall", "firing", "HostDiskAlmostFull")) == 1
    finally:
        webhook.close()
