"""The reload outcome as metrics (vigil_config_reload_*), for VigilReloadFailed, and a rejected
reload's problems on one log line."""

from __future__ import annotations

import json
import re
import signal
import time

from tests.lab.harness import wait_until

CONFIG = "listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n  - {name: a, kind: host, interval: 1s}\n"


def gauge(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def test_a_rejected_reload_sets_the_metric_to_0_until_a_good_one(start_agent, write_config):
    config = write_config(CONFIG)
    before = time.time()
    agent = start_agent(config)
    text = agent.metrics()
    assert gauge(text, "vigil_config_reload_success") == 1
    started = gauge(text, "vigil_config_reload_timestamp_seconds")
    assert before - 1 <= started <= time.time()
    assert gauge(text, "vigil_tls_certificate_expiry_timestamp_seconds") is None, "no TLS, no certificate"

    good = config.read_text()
    config.write_text(good + "  - {name: b, kind: host, intervl: 1s}\n  - {name: a, kind: host}\n")
    agent.peer.signal(signal.SIGHUP)
    wait_until(lambda: gauge(agent.metrics(), "vigil_config_reload_success") == 0, 10, "the failed reload")
    assert gauge(agent.metrics(), "vigil_config_reload_timestamp_seconds") == started, "the last good load's time"
    [line] = [line for line in agent.peer.output().splitlines() if "reload rejected" in line]
    assert "intervl" in line and "; " in line and "duplicate" in line.lower(), line
    status = json.loads(agent.get("/status.json")[1])
    assert "intervl" in status["reload_error"] and "reloaded" not in status

    config.write_text(good)
    agent.peer.signal(signal.SIGHUP)
    wait_until(lambda: gauge(agent.metrics(), "vigil_config_reload_success") == 1, 10, "the good reload")
    assert gauge(agent.metrics(), "vigil_config_reload_timestamp_seconds") > started
    status = json.loads(agent.get("/status.json")[1])
    assert "reload_error" not in status and status["reloaded"] >= status["started"]
