"""Network faults and peers that die, against one real `vigil run` each.

Silent peers (a TCP port that accepts and never answers, a UDP port that drops every
datagram) and a host name that does not resolve, for every kind at once, next to healthy
jobs on a 1 s interval: the healthy ones keep their schedule, each bad one is down with a
reason that says what happened and names the host. Then each lab peer is killed and
started again on its port while vigil polls it: down with a reason, up again on a later
cycle, vigil never restarted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, vigil_argv
from tests.fakes.meraki import make_org
from tests.fakes.veeam import VeeamFake
from tests.fault_watch import Schedule, series
from tests.kinds.ssh.fixtures import ssh_target
from tests.lab.azurite import ACCOUNT_KEY
from tests.lab.blackhole import UNRESOLVABLE, tcp_blackhole, udp_blackhole
from tests.lab.harness import free_port, wait_until
from tests.lab.nut import STATES, nut
from tests.lab.pki import make_pki
from tests.lab.snmpsim import snmpsim
from tests.lab.sshd import make_key, sshd
from tests.lab.vcsim import PASSWORD as VCENTER_PASSWORD
from tests.lab.vcsim import start_vcsim

INTERVAL = 1.0  # the healthy jobs'
BAD = {"interval": "3s", "timeout": "2s"}  # the bad ones': short, so that each fails a few times
HEALTHY = ("monitor", "nut-ok", "ups-ok")
TARGET_KINDS = ("ssh", "ups", "nut", "vmware", "meraki", "m365")
LOCATION_KINDS = ("sftp", "restic-sftp", "restic-rest", "restic-s3", "borg-ssh", "s3", "azure_blob", "veeam")
SECRET = "fault-lab-secret"  # what every bad target logs in with (it never gets that far)
MAX_DRIFT = 1.0  # seconds a healthy job may start late (the bound)


def bad_jobs(host: str, tcp: int, udp: int, key: Path, known_hosts: Path, ca: Path) -> tuple[list, list]:
    """One target of every network kind and one backup job of every remote location kind, all at `host`."""
    secret = "${env:VIGIL_TEST_FAULT_SECRET}"
    ssh = {"user": "vigil", "key_file": str(key), "known_hosts": str(known_hosts)}
    origin = f"https://{host}:{tcp}"
    targets = [
        {"name": "bad-ssh", "kind": "ssh", "host": host, "port": tcp, **ssh},
        {"name": "bad-ups", "kind": "ups", "host": host, "port": udp, "snmp": {"version": "2c", "community": secret},
         "snmp_timeout": "1s", "retries": 0},
        {"name": "bad-nut", "kind": "nut", "host": host, "port": tcp, "ups": "rack1", "nut_timeout": "1s"},
        {"name": "bad-vmware", "kind": "vmware", "host": host, "port": tcp, "user": "monitor", "password": secret,
         "ca_file": str(ca)},
        {"name": "bad-meraki", "kind": "meraki", "api_key": secret, "base_url": f"{origin}/api/v1",
         "ca_file": str(ca)},
        {"name": "bad-m365", "kind": "m365", "tenant_id": "7d6f2c1e-52a4-4f0e-9b1c-3a5e8d9f0a11",
         "client_id": "0e1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b", "client_secret": secret, "authority": origin,
         "graph_url": origin, "ca_file": str(ca)},
    ]
    # the Azure SDK takes the account from the URL: the path for an address (azurite's way), else the
    # label before `.blob.core.` (the name still ends in the unresolvable domain)
    account_url = (f"{origin}/devstoreaccount1" if host[0].isdigit()
                   else f"https://vigilfault.blob.core.windows.net.{host}:{tcp}")
    locations = {
        "sftp": {"kind": "sftp", "host": host, "port": tcp, "path": "/srv/backups", **ssh},
        "restic-sftp": {"kind": "restic", "repository": f"sftp://vigil@{host}:{tcp}//srv/restic", "password": secret,
                        "key_file": str(key), "known_hosts": str(known_hosts)},
        "restic-rest": {"kind": "restic", "repository": f"rest:{origin}/", "password": secret, "ca_file": str(ca)},
        "restic-s3": {"kind": "restic", "repository": f"s3:{origin}/backups", "password": secret, "ca_file": str(ca),
                      "env": {"AWS_ACCESS_KEY_ID": "fault-id", "AWS_SECRET_ACCESS_KEY": secret}},
        "borg-ssh": {"kind": "borg", "repository": f"ssh://vigil@{host}:{tcp}/./repo", "passphrase": secret,
                     "key_file": str(key), "known_hosts": str(known_hosts)},
        "s3": {"kind": "s3", "bucket": "backups", "endpoint_url": origin, "region": "us-east-1",
               "access_key_id": secret, "secret_access_key": secret, "ca_file": str(ca)},
        "azure_blob": {"kind": "azure_blob", "account_url": account_url, "container": "backups",
                       "credential": "${env:VIGIL_TEST_FAULT_AZURE_KEY}", "ca_file": str(ca)},
        "veeam": {"kind": "veeam", "url": origin, "user": "vigil", "password": secret, "job": "Nightly",
                  "ca_file": str(ca)},
    }
    backups = [{"name": f"bad-{name}", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
                "primary": location, **BAD} for name, location in locations.items()]
    return [{**target, **BAD} for target in targets], backups


@pytest.fixture
def credentials(tmp_path) -> tuple[Path, Path, Path]:
    """A client key, a known_hosts pinning it for every bad host, a CA no bad peer gets to show."""
    key = make_key(tmp_path / "client_ed25519")
    key_type, key_data = Path(f"{key}.pub").read_text().split()[:2]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(f"{host} {key_type} {key_data}\n" for host in ("127.0.0.1", UNRESOLVABLE)))
    return key, known_hosts, make_pki(tmp_path / "pki").ca


def healthy_targets(nut_lab, snmp_lab) -> list[dict]:
    return [{"name": "monitor", "kind": "host"}, nut_lab.target("online", name="nut-ok"),
            snmp_lab.v2c("ups-ok", community="ups-mib")]


def agent_config(targets: list[dict], backups: list[dict] = ()) -> str:
    return yaml.safe_dump({"listen": "127.0.0.1:{port}", "state_dir": "{state}",
                           "defaults": {"interval": f"{INTERVAL:g}s"}, "targets": targets, "backups": list(backups)})


FAULTS = {
    # fault: (what a bad target's reason says, how it names the host)
    "silent": (r"within (the )?[\d.]+ ?s", "127.0.0.1:{port}"),
    "unresolvable": (r"does not resolve|Name or service not known", UNRESOLVABLE),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_peer_of_every_kind_leaves_the_healthy_jobs_on_schedule(
        fault, credentials, nut_lab, snmp_lab, start_agent, write_config, fault_report):
    said, names = FAULTS[fault]
    with tcp_blackhole() as tcp, udp_blackhole() as udp:
        host = "127.0.0.1" if fault == "silent" else UNRESOLVABLE
        targets, backups = bad_jobs(host, tcp.port, udp.port, *credentials)
        agent = start_agent(write_config(agent_config([*healthy_targets(nut_lab, snmp_lab), *targets], backups)),
                            env={"VIGIL_TEST_FAULT_SECRET": SECRET, "VIGIL_TEST_FAULT_AZURE_KEY": ACCOUNT_KEY})
        wait_until(lambda: _all_judged(agent, targets, backups), 30, "every bad job to fail once")
        schedule = Schedule(HEALTHY, INTERVAL)
        schedule.watch(agent, 10)
        document = json.loads(agent.get("/status.json")[1])
        up = series(agent, "vigil_up")
    drifts = {job: schedule.drift(job) for job in HEALTHY}
    for job in HEALTHY:
        assert len(schedule.runs.get(job, {})) >= 6, f"{job} ran {len(schedule.runs.get(job, {}))} times in 10 s"
        assert schedule.down.get(job, 0) == 0, f"{job} went down during the fault"
    assert max(drifts.values()) < MAX_DRIFT, f"healthy jobs started late: {drifts}"
    jobs = {job["name"]: job for job in document["jobs"]}
    drift = f"drift {max(drifts.values()):.2f}s"
    for target in targets:
        reason = jobs[target["name"]]["last_error"]
        port = udp.port if target["kind"] == "ups" else tcp.port
        kind = target["kind"]
        fault_report(fault=f"{fault} peer: {kind}", expected="vigil_up 0, reason names host; others on time",
                     observed=f"{_short(reason)} | {drift}")
        assert up[target["name"]] == 0
        assert re.search(said, reason), f"{kind}: the reason does not say what happened: {reason}"
        assert names.format(port=port) in reason, f"{kind}: the reason does not name the host: {reason}"
    verdicts = {verdict["name"]: verdict for board in document["boards"].values() for verdict in board}
    for job in backups:
        verdict = verdicts[job["name"]]
        fault_report(fault=f"{fault} peer: {job['name'][4:]} location",
                     expected="backup unreachable or unknown with a reason",
                     observed=f"{verdict['status']}: {_short(verdict['detail'], 40)} | {drift}")
        # the wording of backup reasons is another part of the (findings): loosely here
        assert verdict["status"] in ("unreachable", "unknown"), verdict
        assert verdict["detail"], verdict


def test_vigil_once_ends_when_every_peer_accepts_and_never_answers(credentials, write_config, fault_report):
    """A call without a timeout of its own (msal's requests, pyvmomi's version discovery) held
    a thread for ever, and `vigil once` waited for it: now each ends within the job's timeout."""
    with tcp_blackhole() as tcp, udp_blackhole() as udp:
        targets, _ = bad_jobs("127.0.0.1", tcp.port, udp.port, *credentials)
        config = write_config(agent_config(targets))
        started = time.monotonic()
        done = subprocess.run(vigil_argv("-c", str(config), "once"), capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "VIGIL_TEST_FAULT_SECRET": SECRET},
                              timeout=120)  # generous: the failure this guards against is a hang for ever
        took = time.monotonic() - started
    fault_report(fault="vigil once, every target's peer silent", expected="exits 1, each target FAILED with why",
                 observed=f"exit {done.returncode} after {took:.1f}s, {done.stdout.count('FAILED')} FAILED")
    assert done.returncode == 1, done.stderr[-2000:]
    for target in targets:
        line = next(line for line in done.stdout.splitlines() if f" {target['name']} " in line)
        assert line.startswith("FAILED") and re.search(FAULTS["silent"][0], line), line


def _own_error_classes() -> set[str]:
    """The names of vigil's own exception classes, with every kind's module imported."""
    from agent import PACKAGES, registry
    from checks.sources import LOCATIONS

    for path in {**registry.COLLECTORS, **LOCATIONS}.values():
        registry.load(path)
    found, todo = set(), [Exception]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.partition(".")[0] in PACKAGES:
            found.add(cls.__name__)
    return found


@pytest.mark.parametrize("fault", ["refused", "unresolvable", "silent"])
def test_every_reason_a_bad_peer_gives_is_words_for_people(fault, credentials, write_config):
    """No class name of vigil's own (`SshError:`), no `[Errno 111]` or reprs of addresses, no instruction
    meant for the code (`connect again`), cut after a word: what the status page and `once` show."""
    with tcp_blackhole() as tcp, udp_blackhole() as udp:
        host = UNRESOLVABLE if fault == "unresolvable" else "127.0.0.1"
        targets, backups = bad_jobs(host, free_port() if fault == "refused" else tcp.port, udp.port, *credentials)
        done = subprocess.run(vigil_argv("once", "-c", str(write_config(agent_config(targets, backups))), "--format",
                                         "json"), capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env={**os.environ, "VIGIL_TEST_FAULT_SECRET": SECRET,
                                   "VIGIL_TEST_FAULT_AZURE_KEY": ACCOUNT_KEY})
    reasons = {job["name"]: job["detail"] for job in json.loads(done.stdout)}
    assert set(reasons) == {job["name"] for job in (*targets, *backups)}, done.stderr[-2000:]
    own = re.compile(r"\b(" + "|".join(sorted(_own_error_classes())) + r")\b")
    for name, reason in reasons.items():
        assert reason, name
        assert not own.search(reason), f"{name}: {reason}"
        assert not re.search(r"\[Errno|\('\d+\.\d+\.\d+\.\d+', \d+\)|connect again| x \d+ tries", reason), \
            f"{name}: {reason}"
        assert len(reason) <= 320 and not reason.endswith((" ", ",")), f"{name}: {reason}"


def _all_judged(agent, targets: list[dict], backups: list[dict]) -> bool:
    document = json.loads(agent.get("/status.json")[1])
    failed = {job["name"] for job in document["jobs"] if job["last_error"]}
    verdicts = {verdict["name"]: verdict["status"] for board in document["boards"].values() for verdict in board}
    return (all(target["name"] in failed for target in targets)
            and all(verdicts.get(job["name"]) in ("unreachable", "unknown") for job in backups))


def _short(text: str, width: int = 50) -> str:
    """A reason for the report's table: what happened, at its end; not the exception's name or the hint."""
    text = re.sub(r"^(primary: |offsite: )?\w+Error: ", "", text).split("; ")[0]
    if len(text) <= width:
        return text
    tail = text[-(width - 1):]
    return "…" + (tail.split(" ", 1)[1] if " " in tail[:16] else tail)  # from a word's start


# -- peers killed and started again --------------------------------------------------------------------

@dataclass
class Victim:
    """A peer to kill, the job that reads it, and how to start the peer again (returns how to stop it)."""

    job: dict
    kill: Callable[[], None]
    start_again: Callable[[], Callable[[], object]]
    env: dict = field(default_factory=dict)
    backup: bool = False


@contextmanager
def _sshd(tmp_path, request) -> Iterator[Victim]:
    with sshd(tmp_path / "sshd") as server:
        # 2 s: an SSH login (key exchange, auth) on a loaded machine needs more than 1 s's 0.8 s timeout
        yield Victim(ssh_target(server, name="victim", interval="2s"), server.kill,
                     lambda: server.start_again(tmp_path / "sshd-again.log").stop)


@contextmanager
def _snmpsim(tmp_path, request) -> Iterator[Victim]:
    with snmpsim(Path(tempfile.mkdtemp(prefix="vigil-snmpsim-fault-"))) as lab:
        try:
            yield Victim(lab.v2c("victim", community="ups-mib", retries=1), lab.kill, lambda: lab.start_again().stop)
        finally:
            shutil.rmtree(lab.data_dir.parent, ignore_errors=True)


@contextmanager
def _upsd(tmp_path, request) -> Iterator[Victim]:
    with nut(tmp_path / "nut", {"online": STATES["online"]}) as lab:
        yield Victim(lab.target("online", name="victim"), lab.kill, lambda: lab.start_again().stop)


@contextmanager
def _vcsim(tmp_path, request) -> Iterator[Victim]:
    with start_vcsim(tmp_path / "vcsim") as sim:
        # a restarted vcsim forgets its sessions: recovery means logging in again
        yield Victim(sim.target(name="victim", interval="2s"), sim.kill, lambda: sim.start_again().stop,
                     env={"VIGIL_TEST_VCENTER_PASSWORD": VCENTER_PASSWORD})


@contextmanager
def _meraki(tmp_path, request) -> Iterator[Victim]:
    fake = request.getfixturevalue("meraki_fakes")([make_org("549236", "Faults", networks=2, devices=6)])
    yield Victim({**request.getfixturevalue("meraki_target")(fake), "name": "victim"}, fake.kill, _restart(fake))


@contextmanager
def _graph(tmp_path, request) -> Iterator[Victim]:
    fake = request.getfixturevalue("graph_fake")
    # the tokens from before are refused: recovery means a new one
    yield Victim({**request.getfixturevalue("m365_target")(), "name": "victim", "interval": "2s"}, fake.kill,
                 _restart(fake, fake.expire_tokens))


@contextmanager
def _veeam(tmp_path, request) -> Iterator[Victim]:
    pki = make_pki(tmp_path / "veeam-pki")
    with VeeamFake(pki) as fake:
        job = fake.add_job("Nightly")
        fake.add_session(job, "Success", time.time() - 7200, time.time() - 6000)
        location = {"kind": "veeam", "url": fake.url, "user": fake.user, "password": "${env:VIGIL_TEST_VEEAM_PASSWORD}",
                    "job": "Nightly", "ca_file": str(pki.ca)}
        yield Victim({"name": "victim", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
                      "primary": location, "interval": "2s", "timeout": "1500ms"}, fake.kill,
                     _restart(fake, fake.forget_tokens),  # as a restarted VBR: recovery means logging in again
                     env={"VIGIL_TEST_VEEAM_PASSWORD": fake.password}, backup=True)


def _restart(fake, forget: Callable[[], None] | None = None) -> Callable[[], Callable[[], None]]:
    """How to start a fake again, after `forget` (what a restarted service loses); its fixture stops it."""
    def start_again() -> Callable[[], None]:
        if forget is not None:
            forget()
        fake.start_again()
        return lambda: None

    return start_again


PEERS = {"sshd": _sshd, "snmpsim": _snmpsim, "upsd (NUT)": _upsd, "vcsim": _vcsim, "Meraki fake": _meraki,
         "Graph fake": _graph, "Veeam fake": _veeam}
DOWN = ("unreachable", "unknown")  # a backup job's verdicts while its location cannot be read


@pytest.mark.parametrize("peer", PEERS)
def test_a_peer_killed_and_started_again_is_polled_again_without_restarting_vigil(
        peer, tmp_path, request, start_agent, write_config, fault_report):
    with PEERS[peer](tmp_path, request) as victim:
        job = {"interval": "1s", **victim.job}
        config = agent_config([{"name": "monitor", "kind": "host"}] + ([] if victim.backup else [job]),
                              [job] if victim.backup else [])
        agent = start_agent(write_config(config), env=victim.env)
        wait_until(lambda: _state(agent, victim) == (True, ""), 60, f"the {peer} job to be up")
        victim.kill()
        killed = time.monotonic()
        _, reason = wait_until(lambda: _down(agent, victim), 30, f"the {peer} job to be down")
        noticed = time.monotonic() - killed
        stop = victim.start_again()
        try:
            restarted = time.monotonic()
            wait_until(lambda: _state(agent, victim)[0], 60, f"the {peer} job to be up again")
            recovered = time.monotonic() - restarted
        finally:
            stop()
        monitor = next(job for job in json.loads(agent.get("/status.json")[1])["jobs"] if job["name"] == "monitor")
        assert agent.peer.alive()
    fault_report(fault=f"{peer} killed mid-polling, restarted", expected="down with a reason, up on a later cycle",
                 observed=f"down in {noticed:.1f}s: {_short(reason, 36)}; back in {recovered:.1f}s",
                 recovered_in=recovered)
    assert reason and not reason.startswith("timed out after"), reason
    assert monitor["errors_total"] == 0, monitor


def _state(agent, victim: Victim) -> tuple[bool, str]:
    """(up, reason): a target by vigil_up, a backup job by its verdict too."""
    document = json.loads(agent.get("/status.json")[1])
    job = next(job for job in document["jobs"] if job["name"] == "victim")
    if job["last_run"] is None:
        return False, "pending"
    if not victim.backup or job["last_error"]:
        return not job["last_error"], job["last_error"]
    verdict = next(v for board in document["boards"].values() for v in board if v["name"] == "victim")
    return verdict["status"] not in (*DOWN, "pending"), verdict["detail"] if verdict["status"] in DOWN else ""


def _down(agent, victim: Victim) -> tuple[bool, str] | None:
    up, reason = _state(agent, victim)
    return (up, reason) if not up else None
