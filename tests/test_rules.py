"""Alert rules, their promtool unit tests, runbooks and the Alertmanager routing, with the real tools."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from tests.lab.harness import need

DEPLOY = ROOT / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.test.yml"))
ALERTMANAGER = DEPLOY / "alertmanager" / "vigil.yml"


def alerts() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def runbook_url(alert: str) -> str:
    """The one runbook link every rule carries: the runbook_base_url external label when
    Prometheus sets one, else the agent that raised the alert, which serves its runbooks."""
    return ("{{ with $externalLabels.runbook_base_url }}{{ . }}"
            "{{ else }}http://{{ $labels.instance }}/runbooks{{ end }}" f"/{alert}")


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=DEPLOY / "prometheus")


def test_rules_pass_promtool_check():
    done = run(need("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass():
    done = run(need("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_silent():
    fired, silent = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - fired == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested staying silent"


@pytest.mark.parametrize("alert", alerts(), ids=lambda alert: alert["alert"])
def test_every_alert_says_what_and_where_and_links_its_runbook(alert):
    assert alert["labels"]["severity"] in ("critical", "warning")
    assert alert["labels"]["area"] in ("agent", "host", "backup", "meraki", "ups", "m365", "vmware", "service")
    annotations = alert["annotations"]
    assert annotations["summary"] and annotations["description"]
    if alert["labels"]["area"] == "backup":
        assert "$labels.backup" in annotations["summary"]
    assert annotations["runbook_url"] == runbook_url(alert["alert"]), (
        "runbook_url must be the served runbook, overridable by the runbook_base_url external label "
        "(see docs/alerting.md, \"Runbook links\")")
    text = (ROOT / "docs" / "runbooks" / f"{alert['alert']}.md").read_text()
    assert text.startswith(f"# {alert['alert']}\n") and "## What to check" in text and "## How to fix" in text


def test_promtool_tests_expect_the_rendered_runbook_links():
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            base = case.get("external_labels", {}).get("runbook_base_url")
            for check in case.get("alert_rule_test", []):
                for alert in check.get("exp_alerts") or []:
                    instance = alert["exp_labels"].get("instance", "")
                    expected = f"{base or f'http://{instance}/runbooks'}/{check['alertname']}"
                    assert alert.get("exp_annotations", {}).get("runbook_url") == expected, (path.name, case["name"])


def test_every_runbook_belongs_to_an_alert():
    assert {p.stem for p in (ROOT / "docs" / "runbooks").glob("*.md")} == {a["alert"] for a in alerts()}


def test_every_metric_in_deploy_is_in_the_catalogue():
    catalogue = (ROOT / "docs" / "metrics.md").read_text()
    used = set()
    for path in DEPLOY.rglob("*"):
        if path.suffix in (".yml", ".yaml", ".json"):
            used |= set(re.findall(r"\bvigil_[a-z0-9_]+", path.read_text()))
    used.discard("runbook_base_url")  # an external label (the runbook links' base), not a metric
    # a name ending in "_" is a family prefix in prose ("the vigil_server_* families")
    missing = {name for name in used if (f"`{name}" if name.endswith("_") else f"`{name}`") not in catalogue}
    assert not missing


def test_alertmanager_config_passes_amtool():
    done = subprocess.run([need("amtool"), "check-config", str(ALERTMANAGER)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("labels, receiver", [
    ({"alertname": "BackupMissed", "area": "backup", "severity": "critical"}, "oncall"),
    ({"alertname": "BackupOffsiteStale", "area": "backup", "severity": "warning"}, "daytime"),
    ({"alertname": "BackupUnverified", "area": "backup", "severity": "warning"}, "daytime"),
    ({"alertname": "BackupStateUnknown", "area": "backup", "severity": "critical"}, "oncall"),
    ({"alertname": "BackupDrillFailed", "area": "backup", "severity": "critical"}, "oncall"),
    ({"alertname": "BackupDrillOverdue", "area": "backup", "severity": "warning"}, "daytime"),
    ({"alertname": "UpsOnBattery", "area": "ups", "severity": "critical"}, "oncall"),
    ({"alertname": "HostDiskAlmostFull", "area": "host", "severity": "critical"}, "oncall"),
    ({"alertname": "HostMemoryLow", "area": "host", "severity": "warning"}, "daytime"),
    ({"alertname": "VigilJobFailing", "area": "agent", "severity": "warning"}, "daytime"),
    ({"alertname": "M365ServiceInterrupted", "area": "m365", "severity": "critical"}, "oncall"),
    ({"alertname": "M365AppCredentialExpiresIn7Days", "area": "m365", "severity": "warning"}, "daytime"),
    ({"alertname": "ProbeDown", "area": "service", "severity": "critical"}, "oncall"),
    ({"alertname": "ProbeTlsOldVersion", "area": "service", "severity": "warning"}, "daytime"),
])
def test_critical_alerts_page_on_call_and_warnings_wait_for_the_day(labels, receiver):
    done = subprocess.run([need("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                           *(f"{k}={v}" for k, v in labels.items())], capture_output=True, text=True)
    assert done.stdout.strip() == receiver, done.stdout + done.stderr


def test_vigil_down_inhibits_the_alerts_of_what_it_watches():
    inhibit = yaml.safe_load(ALERTMANAGER.read_text())["inhibit_rules"]
    down = next(rule for rule in inhibit if rule["source_matchers"] == ['alertname="VigilDown"'])
    assert down["equal"] == ["job", "instance"] and 'area=~".+"' in down["target_matchers"]
