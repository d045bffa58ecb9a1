"""The operator's view tells the truth: what the shipped rules alert on shows on the status page and in `once`.

A UPS on battery with 8 minutes left used to show a green "ok" and "all targets up" while the
rules paged on-call. Here real peers are put in alerting states and the page, `vigil once` and a
real Prometheus loaded with the shipped rules must say the same things.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import http_get, wait_until
from tests.lab.nut import ON_MAINS, nut

TODAY = time.strftime("%Y-%m-%d", time.gmtime())
ON_BATTERY_8_MIN = {**ON_MAINS, "ups.status": "OB DISCHRG", "battery.charge": "55", "battery.runtime": "480",
                    "input.voltage": "0.0", "input.frequency": "0", "ups.test.date": TODAY}


@pytest.fixture
def serverroom():
    """A NUT unit of its own, on battery with 8 minutes of runtime left."""
    directory = Path(tempfile.mkdtemp(prefix="vigil-nut-attention-"))
    try:
        with nut(directory, {"serverroom": ON_BATTERY_8_MIN}) as lab:
            yield lab
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def status(agent) -> dict:
    return json.loads(agent.get("/status.json")[1])


def test_a_ups_on_battery_needs_attention_on_the_page_and_in_once(serverroom, start_agent, write_config):
    ups = serverroom.target("serverroom", name="ups-serverroom", interval="2s")
    config = write_config(f"""
listen: 127.0.0.1:{{port}}
state_dir: {{state}}
targets:
  - {{name: nas-01, kind: counting}}
  - {{name: srv-01, kind: counting}}
  - {json.dumps(ups)}
""")
    agent = start_agent(config, test_kinds=True)
    wait_until(lambda: all(job["last_run"] for job in status(agent)["jobs"]), 20, "every target's first run")

    document = status(agent)
    (job,) = [job for job in document["jobs"] if job["name"] == "ups-serverroom"]
    assert job["state"] == "ok"
    assert [(c["alert"], c["severity"], c["says"]) for c in job["concerns"]] == [
        ("UpsOnBattery", "critical", "on battery"), ("UpsRuntimeLow", "critical", "8 min left")]
    assert document["summary"]["attention"] == {"ups-serverroom": ["on battery", "8 min left"]}
    page = agent.get("/")[1].decode()
    assert "<p class='summary bad' id='summary'>3 targets up, 1 needs attention: ups-serverroom on battery, " \
           "8 min left</p>" in page
    assert "<span class='concern critical' title='UpsRuntimeLow (critical)'>8 min left</span>" in page

    lines = once(config, "--target", "ups-serverroom").splitlines()
    assert lines[0].startswith("ok           ups-serverroom (nut)")
    assert lines[1:3] == ["  critical   on battery (UpsOnBattery)", "  critical   8 min left (UpsRuntimeLow)"]
    (printed,) = json.loads(once(config, "--target", "ups-serverroom", "--format", "json"))
    assert [c["alert"] for c in printed["concerns"]] == ["UpsOnBattery", "UpsRuntimeLow"]


def once(config: Path, *options: str, code: int = 0) -> str:
    done = subprocess.run(vigil_argv("once", "-c", str(config), *options, test_kinds=True), capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == code, done.stderr
    return done.stdout


# --- the page, `once` and a real Prometheus with the shipped rules agree -----------------------------

RULES = ROOT / "deploy" / "prometheus" / "rules"
IGNORED = {"alertname", "severity", "area", "job", "instance"}  # what an alert adds to its expression's labels
# The SSH "server" sees "/" with 1% of its space available: the real stat, one field changed.
NEARLY_FULL_STAT = "#!/bin/sh\n/usr/bin/stat \"$@\" | awk '$7 == \"/\" { $3 = int($1 / 100) } { print }'\n"


def without_delays(directory: Path) -> list[str]:
    """The shipped rule files with every `for:` removed: an alert fires at its first evaluation."""
    directory.mkdir()
    for path in RULES.glob("*.yml"):
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule.pop("for", None)
        (directory / path.name).write_text(yaml.safe_dump(rules))
    return sorted(str(path) for path in directory.glob("*.yml"))


def key(alert: str, severity: str, labels: dict) -> tuple:
    return alert, severity, tuple(sorted((k, v) for k, v in labels.items() if k not in IGNORED))


def firing(prom) -> set[tuple]:
    """Prometheus' alerts, firing or pending."""
    document = json.loads(http_get(prom.url + "/api/v1/alerts")[1])
    return {key(a["labels"]["alertname"], a["labels"]["severity"], a["labels"]) for a in document["data"]["alerts"]}


def shown(agent) -> tuple[set[tuple], set[str]]:
    """The page's concerns (every job's and the agent's own), and the rules it does not judge itself."""
    document = status(agent)
    concerns = [c for job in document["jobs"] for c in job["concerns"]] + document["summary"]["agent"]
    return ({key(c["alert"], c["severity"], c["labels"]) for c in concerns},
            {rule["alert"] for rule in document["not_judged"]})


def agree(agent, prom, expected: set[tuple[str, str]]) -> set[tuple]:
    """Wait until the page shows exactly what Prometheus alerts on, `expected` (alert, subject) among it."""
    last: dict[str, object] = {}

    def same() -> bool:
        page, left = shown(agent)
        rules = {alert for alert in firing(prom) if alert[0] not in left}
        subjects = {(alert, dict(labels).get("target") or dict(labels).get("backup")) for alert, _, labels in page}
        last.update(page=page, prometheus=rules, missing=expected - subjects)
        return page == rules and expected <= subjects

    try:
        wait_until(same, 90, "the page and Prometheus to agree")
    except pytest.fail.Exception as exc:
        raise AssertionError(f"only on the page: {sorted(last['page'] - last['prometheus'])}\n"
                             f"only in Prometheus: {sorted(last['prometheus'] - last['page'])}\n"
                             f"expected but not shown: {sorted(last['missing'])}") from exc
    return last["page"]


def test_a_ups_on_battery_that_cannot_be_read_stays_on_battery_on_the_page_as_in_prometheus(
        serverroom, start_agent, write_config, tmp_path):
    """The UPS pages read last_over_time(...[3m]): a failed poll neither resolves a power cut in
    Prometheus nor on the page, which judges the last good series the failed polls took off /metrics."""
    from tests.lab.prometheus import prometheus

    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\n" + yaml.safe_dump(
        {"targets": [serverroom.target("serverroom", name="ups-serverroom", interval="1s")]}))
    agent = start_agent(config)
    scrape = [{"job_name": "vigil", "static_configs": [{"targets": [agent.url.removeprefix("http://")]}]}]
    with prometheus(tmp_path / "prom", scrape, without_delays(tmp_path / "rules")) as prom:
        on_battery = {("UpsOnBattery", "ups-serverroom"), ("UpsRuntimeLow", "ups-serverroom")}
        assert not {alert for alert, _, _ in agree(agent, prom, on_battery)} & {"UpsUnreachable", "VigilJobFailing"}
        serverroom.kill()  # upsd crashes: every poll fails from now on
        agree(agent, prom, on_battery | {("UpsUnreachable", "ups-serverroom"), ("VigilJobFailing", "ups-serverroom")})
    (job,) = status(agent)["jobs"]
    assert job["state"] == "failed"


@pytest.fixture
def alerting_server(tmp_path):
    """An sshd "server" whose "/" is 99% full and with two failed systemd units."""
    from tests.kinds.ssh.fixtures import FAKE_TOOLS
    from tests.lab.sshd import sshd

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("the lab server needs root for its own /run (a mount namespace)")
    tools = tmp_path / "server-bin"
    tools.mkdir()
    for name, text in {"systemctl": FAKE_TOOLS["systemctl"], "timedatectl": FAKE_TOOLS["timedatectl"],
                       "stat": NEARLY_FULL_STAT}.items():
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    with sshd(tmp_path / "sshd", path=f"{tools}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
              private_run=("systemd/system/",)) as server:
        yield server


def test_the_page_once_and_prometheus_with_the_shipped_rules_agree(serverroom, alerting_server, nginx, start_agent,
                                                                    write_config, tmp_path):
    from tests.kinds.ssh.fixtures import ssh_target
    from tests.lab.prometheus import prometheus
    from tests.lab.snmpsim import DATA, snmpsim

    seed = tmp_path / "snmp-seed"
    seed.mkdir()
    shutil.copy(DATA / "ups-mib.snmprec", seed / "rack-recording.snmprec")  # its name is the community
    serverroom.set_state("serverroom", {**ON_MAINS, "ups.test.date": TODAY})
    with snmpsim(Path(tempfile.mkdtemp(prefix="vigil-snmpsim-attention-")), seed) as snmp:
        targets = [serverroom.target("serverroom", name="ups-serverroom", interval="1s"),
                   snmp.v2c("ups-rack", "rack-recording", interval="1s"),
                   ssh_target(alerting_server, name="fileserver-01", interval="5s", timeout="4s"),
                   {"name": "nas-01", "kind": "failing", "interval": "1s"},
                   {"name": "portal", "kind": "http", "url": nginx.url("expired"), "ca_file": str(nginx.ca),
                    "interval": "1s"}]
        config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\n" + yaml.safe_dump({
            "targets": targets,
            "backups": [{"name": "erp-dumps", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
                         "interval": "2s", "primary": {"kind": "files", "path": str(tmp_path / "gone")}}]}))
        agent = start_agent(config, test_kinds=True)
        scrape = [{"job_name": "vigil", "static_configs": [{"targets": [agent.url.removeprefix("http://")]}]}]
        with prometheus(tmp_path / "prom", scrape, without_delays(tmp_path / "rules")) as prom:
            always = {("HostDiskAlmostFull", "fileserver-01"), ("HostSystemdUnitsFailed", "fileserver-01"),
                      ("BackupUnreachable", "erp-dumps"), ("VigilJobFailing", "nas-01"),
                      ("ProbeCertificateExpiring", "portal"), ("ProbeTlsBroken", "portal")}
            before = agree(agent, prom, always)
            assert not {alert for alert, _, _ in before} & {"UpsOnBattery", "UpsRuntimeLow"}

            serverroom.set_state("serverroom", ON_BATTERY_8_MIN)  # mains fail in the server room ...
            snmp.rewrite("rack-recording", {"1.3.6.1.2.1.33.1.4.1.0": "2|5", "1.3.6.1.2.1.33.1.2.2.0": "2|60",
                                      "1.3.6.1.2.1.33.1.2.3.0": "2|20"})  # ... and at the rack: 20 min left
            after = agree(agent, prom, always | {("UpsOnBattery", "ups-serverroom"), ("UpsOnBattery", "ups-rack"),
                                                 ("UpsRuntimeLow", "ups-serverroom")})
            assert ("UpsRuntimeLow", "critical", (("target", "ups-rack"),)) not in after

        page = agent.get("/")[1].decode()
        summary = re.search(r"<p class='summary bad' id='summary'>(.*?)</p>", page).group(1)
        assert summary.startswith("1 of 4 targets down (nas-01), 4 need attention: ")
        assert "ups-serverroom on battery, 8 min left" in summary and "ups-rack on battery" in summary
        assert "fileserver-01 1.0% free on /, 2 failed units" in summary
        assert "portal leaf certificate expired 24 h ago, certificate refused" in summary
        # reasons in words: no class name (LocationError:, SshError:), no script in its shell quoting
        document = status(agent)
        (board,) = document["boards"]["Backups"]
        assert board["detail"] == f"primary: cannot list {tmp_path / 'gone'}: No such file or directory"
        reasons = [board["detail"], *(job["last_error"] for job in document["jobs"]),
                   *(signal["error"] for job in document["jobs"] for signal in job["signals"])]
        assert not [reason for reason in reasons if re.search(r"\b[A-Z]\w*(Error|Exception)\b|/bin/sh|'\"'", reason)]
        keep_screenshots(agent, tmp_path)

        # the same from `once`, but pending updates: they come from the SSH inventory, which one run
        # may finish within its timeout and another not
        printed = json.loads(once(config, "--format", "json", code=1))  # a target down, a backup not ok
        by_once = {(job["name"], c["alert"]) for job in printed for c in job["concerns"]}
        on_page = {(job["name"], c["alert"]) for job in status(agent)["jobs"] for c in job["concerns"]}
        assert {c for c in by_once if c[1] != "HostSecurityUpdatesPending"} == \
            {c for c in on_page if c[1] != "HostSecurityUpdatesPending"}


def keep_screenshots(agent, tmp_path) -> None:
    """The page with UPS units on battery, at a desktop's and a phone's width, for a person to look at."""
    from tests.lab.browser import chromium, offscreen

    artifacts = ROOT / ".artifacts"
    artifacts.mkdir(exist_ok=True)
    served = agent.get("/")[1].decode()
    for name, size in (("status-ups-on-battery.png", "1280,900"), ("status-ups-on-battery-phone.png", "390,844")):
        assert offscreen(served, tmp_path / "profile", size) == [], size
        chromium(agent.url + "/", tmp_path / "profile", screenshot=artifacts / name, size=size)
