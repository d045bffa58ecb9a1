"""SIGHUP with a config broken in each kind's section, one agent taking them all in turn:
the running config keeps collecting, the error names the line and the field,
vigil_config_reload_success is 0, and READY=1 follows RELOADING=1 every time.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable

from tests.every_kind import Lab, lab  # noqa: F401 (a fixture)
from tests.lab.harness import free_port, wait_until
from tests.test_lifecycle import notify_socket, sighup_until_ready  # noqa: F401 (a fixture)
from tests.test_reload_metrics import gauge

INLINE = "hunter2-inline"  # noqa: S105 — a secret written inline, which the error must not repeat


def _set(**values: object) -> Callable[[dict], None]:
    return lambda section: section.update(values)


# (what is broken, job, section of the job ("" the job itself), change, the field the error names)
CASES = [
    ("host: unknown field", "monitor", "", _set(exclude_mountpoint=["/snap/*"]), "exclude_mountpoint"),
    ("ssh: wrong type", "linux-1", "", _set(port="twenty-two"), "port"),
    ("ups: bad secret reference", "ups-1", "snmp", _set(community="${env:VIGIL_TEST_NO_SUCH_VARIABLE}"),
     "community"),
    ("nut: bad duration", "nut-alarm", "", _set(timeout="2 fortnights"), "timeout"),
    ("vmware: secret written inline", "vc", "", _set(password=INLINE), "password"),
    ("meraki: secret file missing", "meraki", "", _set(api_key="${file:/nonexistent/meraki-key}"), "api_key"),
    ("m365: unknown field", "m365", "", _set(tenant="contoso"), "tenant"),
    ("backup job: bad duration", "borg-nightly", "", _set(deadline="4 hours"), "deadline"),
    ("restic: wrong type", "restic-nightly", "primary", _set(repository=["/a", "/b"]), "repository"),
    ("restic rest: bad secret reference", "restic-nightly", "offsite", _set(password="${cred:no-such-credential}"),
     "password"),
    ("borg: unknown field", "borg-nightly", "primary", _set(passphrase_file="/etc/borg"), "passphrase_file"),
    ("files: wrong type", "erp-dump", "primary", _set(pattern={"glob": "*"}), "pattern"),
    ("sftp: bad duration", "erp-dump", "offsite", _set(timeout="10 parsecs"), "timeout"),
    ("s3: secret written inline", "erp-cloud", "primary", _set(secret_access_key=INLINE), "secret_access_key"),
    ("azure_blob: unknown field", "erp-cloud", "offsite", _set(sas_token="x"), "sas_token"),
    ("veeam: wrong type", "veeam-fileserver", "primary", _set(job=["a", "b"]), "job"),
    ("tcp: a port out of range", "ssh-port", "", _set(port=70000), "port"),
    ("dns: an expected answer of another type", "www-resolves", "", _set(expect_answers=["www.lab.example"]),
     "expect_answers"),
    ("icmp: wrong type", "loopback-ping", "", _set(count="three"), "count"),
]


def broken(base: Lab, job: str, section: str, change: Callable[[dict], None], port: int, state) -> str:
    """The lab's config with one job's section changed."""
    mutated = Lab(copy.deepcopy(base.targets), copy.deepcopy(base.backups))
    (entry,) = [item for item in mutated.targets + mutated.backups if item["name"] == job]
    change(entry[section] if section else entry)
    return mutated.config(state, port)


def line_of(text: str, job: str, section: str, field: str) -> int:
    """The 1-based line of `field` in `job`'s `section` of the YAML text."""
    lines = text.splitlines()
    at = next(n for n, line in enumerate(lines) if line.lstrip("- ") == f"name: {job}")
    for key in (section, field) if section else (field,):
        at = next(n for n in range(at, len(lines)) if lines[n].lstrip("- ").startswith(f"{key}:"))
    return at + 1


def last_success(agent, job: str) -> float:
    match = re.search(rf'^vigil_last_success_timestamp_seconds{{[^}}]*(?:target|backup)="{re.escape(job)}"[^}}]*}} '
                      r"(\S+)$", agent.metrics(), re.M)
    return float(match.group(1)) if match else 0.0


def test_broken_configs_of_every_kind_keep_the_running_one(
        lab, notify_socket, start_agent, write_config, tmp_path, fault_report):  # noqa: F811 (fixtures)
    sock, notify_path = notify_socket
    state, port = tmp_path / "state", free_port()
    good = lab.config(state, port)
    config = write_config(good)
    agent = start_agent(config, env={**lab.env, "NOTIFY_SOCKET": str(notify_path)})
    wait_until(lambda: all(last_success(agent, job) for job in lab.jobs), 60, "a success of every job")
    assert sock.recv(4096).decode().startswith("READY=1")
    worst = 0.0
    for what, job, section, change, field in CASES:
        text = broken(lab, job, section, change, port, state)
        config.write_text(text)
        before = last_success(agent, job)
        messages = sighup_until_ready(agent, sock)
        assert messages[0].startswith("RELOADING=1"), (what, messages)
        assert gauge(agent.metrics(), "vigil_config_reload_success") == 0, what
        error = json.loads(agent.get("/status.json")[1])["reload_error"]
        where = f"{config.name}:{line_of(text, job, section, field)}: "
        assert where in error and field in error, f"{what}: expected {where}…{field} in {error!r}"
        assert INLINE not in error and INLINE not in agent.peer.output(), f"{what}: the inline secret was repeated"
        started = time.monotonic()
        wait_until(lambda job=job, before=before: last_success(agent, job) > before, 30,
                   f"{job} collected by the running config ({what})")
        worst = max(worst, time.monotonic() - started)
        config.write_text(good)
        sighup_until_ready(agent, sock)
        assert gauge(agent.metrics(), "vigil_config_reload_success") == 1, f"the good config after {what}"
    assert agent.peer.output().count("reload rejected") == len(CASES)
    fault_report(fault=f"SIGHUP with {len(CASES)} broken configs, every kind",
                 expected="old config runs, error names line+field, reload 0, READY=1",
                 observed=f"all {len(CASES)}: line+field named, READY=1; jobs ran within {worst:.1f}s",
                 recovered_in=None, lost=0)
