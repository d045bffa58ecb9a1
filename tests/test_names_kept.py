"""Names are never rewritten: a secret that is part of a configured name (a restic password
`office` and the target `office-monitor`), or equal to one (an SNMP community named after
its target), leaves the name whole in metrics, the status page, `once` and the log, while
the secret is still masked wherever else a free text holds it."""

from __future__ import annotations

import json
import os
import re
import subprocess

import yaml

from agent.config import load_config
from tests.conftest import ROOT, vigil_argv
from tests.lab.backup_tools import ResticRepo
from tests.lab.harness import wait_until

NAMES = ("office-monitor", "office-dumps", "ups-mib")
OWN_WORDS = ("office hours",)  # the status page's own footer (warnings wait for office hours): not the secret


def config_with_names_holding_secrets(tmp_path, snmp_lab) -> tuple[dict, dict[str, str]]:
    """A host target `office-monitor`, a UPS `ups-mib` whose community is `ups-mib`, and a backup job
    `office-dumps` whose restic password is `office`, with an off-site folder `.../office/dumps` that
    does not exist (its error text holds the secret outside any name)."""
    repo = ResticRepo(tmp_path, env={"RESTIC_PASSWORD": "office"})
    repo.backup()
    env = {"T_RESTIC_PW": "office", "VIGIL_TEST_COMMUNITY_UPS_MIB": "ups-mib"}
    config = {"targets": [{"name": "office-monitor", "kind": "host"}, snmp_lab.v2c("ups-mib")],
              "backups": [{"name": "office-dumps", "schedule": "0 1 * * *", "deadline": "4h",
                           "primary": {"kind": "restic", "repository": repo.repository,
                                       "password": "${env:T_RESTIC_PW}"},
                           "offsite": {"kind": "files", "path": str(tmp_path / "office" / "dumps"),
                                       "pattern": "*.sql.gz"}}]}
    return config, {**env, "RESTIC_CACHE_DIR": str(tmp_path / "restic-cache")}


def assert_names_whole_and_secret_masked(text: str, where: str) -> None:
    for name in NAMES:
        assert name in text, f"{where}: {name} is missing"
    assert not re.search(r"\*\*\*-(monitor|dumps)", text), f"{where}: a name was rewritten"
    outside_names = re.sub("|".join(NAMES + OWN_WORDS), "", text)
    assert "office" not in outside_names, f"{where}: the secret shows outside a name"


def test_names_holding_a_secret_stay_whole_and_the_secret_is_masked_elsewhere(tmp_path, snmp_lab, start_agent,
                                                                                  write_config):
    config, env = config_with_names_holding_secrets(tmp_path, snmp_lab)
    path = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\n" + yaml.safe_dump(config, sort_keys=False))
    agent = start_agent(path, env={**os.environ, **env})
    wait_until(lambda: all(job["last_run"] for job in json.loads(agent.get("/status.json")[1])["jobs"]), 60,
               "every job to run once")
    status = agent.get("/status.json")[1].decode()
    document = json.loads(status)
    assert {job["name"] for job in document["jobs"]} == {"office-monitor", "ups-mib", "office-dumps"}
    assert "/***/dumps" in document["boards"]["Backups"][0]["detail"], document["boards"]
    assert_names_whole_and_secret_masked(status, "/status.json")
    assert_names_whole_and_secret_masked(agent.get("/")[1].decode(), "the status page")
    metrics = agent.metrics()
    assert 'vigil_up{kind="host",target="office-monitor"} 1' in metrics
    assert 'vigil_up{kind="ups",target="ups-mib"} 1' in metrics
    assert 'vigil_backup_status{backup="office-dumps",status="unreachable"} 1' in metrics
    for fmt in ("text", "json", "prometheus"):
        done = subprocess.run(vigil_argv("once", "-c", str(path), "--format", fmt), cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ, **env})
        assert_names_whole_and_secret_masked(done.stdout, f"once --format {fmt}")
        assert "office" not in re.sub("|".join(NAMES), "", done.stderr)
    prometheus = done.stdout
    assert 'vigil_up{kind="host",target="office-monitor"} 1' in prometheus
    assert 'vigil_up{kind="ups",target="ups-mib"} 1' in prometheus
    log = agent.peer.output()
    assert "job=office-dumps" in log and "/***/dumps" in log, log
    assert "office" not in re.sub("|".join(NAMES), "", log)


def test_check_config_warns_of_a_name_holding_a_secret_without_printing_the_secret(tmp_path, snmp_lab,
                                                                                   write_config, monkeypatch):
    config, env = config_with_names_holding_secrets(tmp_path, snmp_lab)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    loaded = load_config(write_config(yaml.safe_dump(config, sort_keys=False)))
    warnings = {warning.path: warning.message for warning in loaded.warnings}
    assert warnings["targets[0].name"].startswith("the name holds the value of the secret in "
                                                  "backups[0].primary.password"), warnings
    assert warnings["targets[1].name"].startswith("the name holds the value of the secret in "
                                                  "targets[1].snmp.community"), warnings
    assert "backups[0].name" in warnings
    done = subprocess.run(vigil_argv("check-config", "-c", str(write_config(yaml.safe_dump(config)))), cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0 and done.stderr.count("warning:") >= 3, done.stderr
    assert "office" not in re.sub("|".join(NAMES), "", done.stdout + done.stderr)
