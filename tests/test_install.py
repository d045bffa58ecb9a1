"""deploy/install.sh into a scratch root, and the installed unit running the installed agent.

The installer runs once for the module (pip takes a while the first time), with
VIGIL_ROOT pointing at a temporary directory: this machine's users, /etc, /opt and
systemd are never touched, and a `systemctl` first on PATH records any call.

The sandbox test starts a real systemd 252 manager (`systemd --user`, running as root,
so every sandboxing directive is applied as PID 1 would) in a private mount namespace
where the scratch root's /etc, /opt and /var/lib sit at their real paths, and has it
start the installed unit with a test drop-in. The tests run in file order: uninstall last.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from agent import registry
from checks.sources import LOCATIONS
from tests.conftest import ROOT, SOURCE, vigil_argv
from tests.every_kind import lab  # noqa: F401 (a fixture)
from tests.lab.backup_tools import PASSWORD, ResticRepo
from tests.lab.harness import REQUIRED, Peer, free_port, http_get, need, wait_until
from tests.lab.moto import moto
from tests.lab.pki import make_pki
from tests.lab.sshd import sshd

INSTALLER = SOURCE / "deploy" / "install.sh"  # it builds the agent from the checkout beside it
EXAMPLE = ROOT / "deploy" / "vigil.example.yaml"
UNIT = ROOT / "deploy" / "systemd" / "vigil.service"
SYSTEMD = "/lib/systemd/systemd"


def missing(message: str) -> None:
    """Skip locally, fail under VIGIL_LAB=require (as harness.need does for programs)."""
    if REQUIRED:
        pytest.fail(f"VIGIL_LAB=require: {message}")
    pytest.skip(message)


@dataclass(frozen=True)
class Installed:
    root: Path
    output: str
    systemctl_calls: Path  # written by the fake systemctl if the installer ever calls it

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def install(self, *args: str) -> subprocess.CompletedProcess:
        fake_bin = self.systemctl_calls.parent
        env = {**os.environ, "VIGIL_ROOT": str(self.root), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PATH": f"{fake_bin}:{os.environ['PATH']}"}
        env.pop("CREDENTIALS_DIRECTORY", None)
        return subprocess.run(["bash", str(INSTALLER), *args], env=env, capture_output=True, text=True,
                              timeout=900)

    def account(self) -> list[str]:
        """The vigil line of the scratch root's passwd, split."""
        lines = [line for line in self.path("/etc/passwd").read_text().splitlines() if line.startswith("vigil:")]
        assert len(lines) == 1, lines
        return lines[0].split(":")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    if os.geteuid() != 0:
        missing("install.sh needs root")
    need("useradd", "apt-get install passwd")
    if run("/usr/bin/python3", "-c", "import ensurepip, venv").returncode != 0:
        missing("Debian's python3 cannot make virtual environments (apt-get install python3-venv)")
    root = tmp_path_factory.mktemp("root")
    (root / "etc").mkdir()
    for name in ("passwd", "group"):  # the accounts useradd --prefix adds to, without a vigil of this machine's own
        lines = Path(f"/etc/{name}").read_text().splitlines(keepends=True)
        (root / "etc" / name).write_text("".join(line for line in lines if not line.startswith("vigil:")))
    fake_bin = tmp_path_factory.mktemp("bin")
    calls = fake_bin / "systemctl.calls"
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    (fake_bin / "systemctl").chmod(0o755)
    done = Installed(root, "", calls).install()
    assert done.returncode == 0, done.stdout + done.stderr
    return Installed(root, done.stdout + done.stderr, calls)


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60,
                          env=env if env is not None else os.environ)


def owner_and_mode(path: Path) -> tuple[int, int, str]:
    info = path.stat()
    return info.st_uid, info.st_gid, oct(stat.S_IMODE(info.st_mode))


def enable_backup_jobs(example: str) -> str:
    """The example with its commented backup jobs enabled, as its comments tell an admin to."""
    lines = example.splitlines()
    start = lines.index("# backups:")
    return "\n".join(lines[:start] + [re.sub(r"^# ?", "", line) for line in lines[start:]]) + "\n"


def test_the_example_config_is_valid_as_shipped_and_with_its_backup_jobs_enabled(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    done = run(*vigil_argv("check-config", "-c", str(EXAMPLE)), env=env)
    assert done.returncode == 0, done.stderr
    assert "${cred:" not in "".join(line.partition("#")[0] for line in EXAMPLE.read_text().splitlines())

    enabled = tmp_path / "vigil.yaml"
    enabled.write_text(enable_backup_jobs(EXAMPLE.read_text()))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in sorted(set(re.findall(r"\$\{cred:(\w+)\}", enabled.read_text()))):
        (credentials / name).write_text("dummy\n")
    done = run(*vigil_argv("check-config", "-c", str(enabled)), env={**env, "CREDENTIALS_DIRECTORY": str(credentials)})
    assert done.returncode == 0, done.stderr
    assert "2 backup jobs" in done.stdout


def test_the_installed_agent_runs_from_its_own_environment(installed):
    venv = installed.path("/opt/vigil")
    done = run(venv / "bin" / "vigil", "version")
    assert done.returncode == 0 and done.stdout.startswith("vigil "), done.stderr
    done = run(venv / "bin" / "vigil", "check-config", "-c", installed.path("/etc/vigil/vigil.yaml"))
    assert done.returncode == 0, done.stderr
    where = run(venv / "bin" / "python", "-I", "-c", "import agent; print(agent.__file__)").stdout.strip()
    assert where.startswith(f"{venv}/lib/"), "installed, not an editable link to the checkout"
    # Debian's Python: a venv on /root/.pyenv would vanish behind the unit's ProtectHome=
    assert (venv / "bin" / "python").resolve() == Path("/usr/bin/python3").resolve()


def test_the_installed_agent_runs_a_job_of_every_kind(installed, lab, tmp_path):  # noqa: F811 (a fixture)
    """`vigil once` from /opt/vigil, outside the checkout: every target kind and backup location
    kind against its peer, so that no file a kind needs at run time is left out of the wheel."""
    assert {t["kind"] for t in lab.targets} == set(registry.COLLECTORS)
    locations = {b[side]["kind"] for b in lab.backups for side in ("primary", "offsite") if side in b}
    assert locations == set(LOCATIONS)
    config = tmp_path / "vigil.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "targets": at_defaults(lab.targets),
                                      "backups": at_defaults(lab.backups)}))
    done = subprocess.run([installed.path("/opt/vigil/bin/vigil"), "once", "-c", config, "--format", "json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, **lab.env})
    jobs = {job["name"]: job for job in json.loads(done.stdout or "[]")}
    assert sorted(jobs) == sorted(lab.jobs), done.stderr
    failed = {name: (job["status"], job["detail"], job["error"]) for name, job in jobs.items() if job["status"] != "ok"}
    assert not failed and done.returncode == 0, (failed, done.stderr[-3000:])
    ssh = next(job for job in jobs.values() if job["kind"] == "ssh")
    polled = {sample["name"] for sample in ssh["samples"]}
    assert {"vigil_server_load1", "vigil_server_filesystem_size_bytes"} <= polled, "linux_poll.sh ran"


def at_defaults(jobs: list[dict]) -> list[dict]:
    """The jobs at the default interval and timeout: this run checks the install, not the pace."""
    return [{key: value for key, value in job.items() if key not in ("interval", "timeout")} for job in jobs]


def test_the_user_the_directories_and_the_unit(installed):
    _, password, uid, gid, _, home, shell = installed.account()
    assert (password, home, shell) == ("!", "/var/lib/vigil", "/usr/sbin/nologin")  # no password, no login
    uid, gid = int(uid), int(gid)
    assert uid < 1000, "a system account"
    groups = dict(line.split(":")[::2] for line in installed.path("/etc/group").read_text().splitlines())
    assert groups["vigil"] == str(gid)

    assert owner_and_mode(installed.path("/etc/vigil")) == (0, gid, "0o750")
    assert owner_and_mode(installed.path("/etc/vigil/vigil.yaml")) == (0, gid, "0o640")
    assert owner_and_mode(installed.path("/etc/vigil/credentials")) == (0, 0, "0o700")
    assert owner_and_mode(installed.path("/var/lib/vigil")) == (uid, gid, "0o750")
    assert installed.path("/etc/vigil/vigil.yaml").read_text() == EXAMPLE.read_text()
    unit = installed.path("/etc/systemd/system/vigil.service")
    assert owner_and_mode(unit) == (0, 0, "0o644") and unit.read_text() == UNIT.read_text()

    runbooks = installed.path("/usr/share/doc/vigil/runbooks")
    assert sorted(p.name for p in runbooks.iterdir()) == sorted(p.name for p in (ROOT / "docs" / "runbooks").iterdir())
    assert owner_and_mode(runbooks / "VigilDown.md") == (0, 0, "0o644")

    assert not installed.systemctl_calls.exists(), "systemctl called under VIGIL_ROOT"
    assert "Next steps:" in installed.output and "LoadCredential=NAME:/etc/vigil/credentials/NAME" in installed.output


# Runs in the new mount namespace (unshare), then becomes the manager.
# $1: the scratch root, $2: the test's work directory, $3: the systemd binary.
MANAGER_SCRIPT = r"""
set -euo pipefail
root=$1 work=$2
# A cgroup of its own in every hierarchy: a manager adopts the cgroup it starts in and
# moves every process in it into its init.scope, which must never be this machine's root.
hierarchies=(/sys/fs/cgroup/*)  # cgroup v1 or hybrid: one per controller
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then hierarchies=(/sys/fs/cgroup); fi
for h in "${hierarchies[@]}"; do
  if [ -f "$h/cgroup.procs" ]; then
    mkdir -p "$h/vigil-sandbox-$$"
    if [ -f "$h/cpuset.cpus" ]; then  # a new v1 cpuset takes no process before it has CPUs
      cat "$h/cpuset.cpus" > "$h/vigil-sandbox-$$/cpuset.cpus"
      cat "$h/cpuset.mems" > "$h/vigil-sandbox-$$/cpuset.mems"
    fi
    echo $$ > "$h/vigil-sandbox-$$/cgroup.procs"
  fi
done
# /run as on a booted host: systemd's marker, and the nodes its sandbox masks paths with
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/systemd/system /run/systemd/user/vigil.service.d /run/systemd/manager
i=/run/systemd/inaccessible
mkdir -m 0755 $i; mkdir -m 0000 $i/dir; install -m 0000 /dev/null $i/reg; mkfifo -m 0000 $i/fifo
mknod -m 0000 $i/chr c 0 0; mknod -m 0000 $i/blk b 0 0
# the scratch root at the real paths; /etc keeps this machine's files underneath
mount -t overlay overlay -o "lowerdir=$root/etc:/etc,upperdir=$work/etc,workdir=$work/etc.work" /etc
mount --bind "$root/opt" /opt
mount --bind "$root/var/lib" /var/lib
mount --bind "$root/usr/share/doc" /usr/share/doc
mount --bind "$work/srv" /srv
# as under PID 1, where credentials are mounted in a private namespace and propagate back
mount --make-rshared /
cp "$root/etc/systemd/system/vigil.service" /run/systemd/user/
cp "$work/test.conf" /run/systemd/user/vigil.service.d/
printf '[Unit]\nDescription=nothing started at boot\n' > /run/systemd/user/idle.target
# A user manager puts StateDirectory= (and ConfigurationDirectory=) under $XDG_CONFIG_HOME:
# /var/lib gives /var/lib/vigil, as on a host. Its runtime directory stays out of /run/user,
# which ProtectHome= hides.
export XDG_RUNTIME_DIR=/run/systemd/manager XDG_CONFIG_HOME=/var/lib
exec "$3" --user --log-target=console --unit=idle.target
"""

# The test's drop-in: what the scratch root and this namespace need, and what the unit's
# comments tell an admin to add.
DROP_IN = """\
[Service]
# the venv's scripts name the scratch root in their #! line, hidden by PrivateTmp=
ExecStart=
ExecStart=/opt/vigil/bin/python /opt/vigil/bin/vigil run -c /etc/vigil/vigil.yaml
# no journald here
StandardOutput=append:{work}/agent.log
StandardError=inherit
LoadCredential=restic:{work}/restic-password
LoadCredential=s3_id:{work}/s3-id
LoadCredential=s3_key:{work}/s3-key
LoadCredential=ups_community:{work}/ups-community
# restic check locks the local repository
ReadWritePaths=/srv/vigil-test/restic
"""

CONFIG = """\
listen: 127.0.0.1:{port}
targets:
  - {{name: monitor, kind: host, interval: 2s, timeout: 1s}}
  - name: ups-snmp
    kind: ups
    host: 127.0.0.1
    port: {snmp_port}
    snmp: {{version: 2c, community: "${{cred:ups_community}}"}}
    interval: 2s
    timeout: 1500ms
  - {{name: ups-nut, kind: nut, host: 127.0.0.1, port: {nut_port}, ups: onbatt, interval: 2s, timeout: 1500ms}}
  - {{name: ping, kind: icmp, host: 127.0.0.1, interval: 2s, timeout: 1500ms}}
  - {{name: ping6, kind: icmp, host: "::1", interval: 2s, timeout: 1500ms}}
backups:
  - name: fileserver-nightly
    schedule: "0 1 * * *"
    deadline: 4h
    interval: 5s
    timeout: 4s
    primary: {{kind: restic, repository: /srv/vigil-test/restic, password: "${{cred:restic}}"}}
    offsite:
      kind: restic
      repository: "sftp://root@127.0.0.1:{ssh_port}/{work}/srv/vigil-test/restic"
      password: "${{cred:restic}}"
      key_file: /etc/vigil/id_ed25519
      known_hosts: /etc/vigil/known_hosts
    verify: {{every: 7d, schedule: "* * * * *"}}  # a window every minute: the check runs at once
  - name: erp-database-dump
    schedule: "30 23 * * *"
    deadline: 1h
    interval: 5s
    timeout: 4s
    primary: {{kind: files, path: /srv/vigil-test/dumps, pattern: "erp-*.sql.gz"}}
    offsite:
      kind: sftp
      host: 127.0.0.1
      port: {ssh_port}
      user: root
      key_file: /etc/vigil/id_ed25519
      known_hosts: /etc/vigil/known_hosts
      path: {work}/srv/vigil-test/dumps
      pattern: "erp-*.sql.gz"
  - name: erp-dump-cloud
    schedule: "30 23 * * *"
    deadline: 1h
    interval: 5s
    timeout: 4s
    primary: {{kind: files, path: /srv/vigil-test/dumps, pattern: "erp-*.sql.gz"}}
    offsite:
      kind: s3
      bucket: offsite
      prefix: erp/
      endpoint_url: {s3_url}
      ca_file: /etc/vigil/s3-ca.pem
      access_key_id: "${{cred:s3_id}}"
      secret_access_key: "${{cred:s3_key}}"
"""


class Manager:
    """A systemd user manager (as root) in its own mount namespace and cgroup."""

    def __init__(self, installed: Installed, work: Path):
        argv = [need("unshare"), "--mount", "--propagation", "private", "bash", "-c", MANAGER_SCRIPT,
                "manager", str(installed.root), str(work), need(SYSTEMD, "apt-get install systemd")]
        self.peer = Peer(argv, work / "manager.log")
        self.nsenter = need("nsenter")
        self.cgroup = f"vigil-sandbox-{self.peer.pid}"

    def wait_ready(self) -> None:
        wait_until(lambda: self.run("test", "-S", "/run/systemd/manager/systemd/private").returncode == 0
                   if self.peer.alive() else pytest.fail(f"the manager died:\n{self.peer.output()[-3000:]}"),
                   30, "the systemd manager")
        # PID 1's notify socket is open to every service user; a user manager's is its own
        self.run("chmod", "0666", "/run/systemd/manager/systemd/notify")

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return run(self.nsenter, "-t", str(self.peer.pid), "-m", "env", "XDG_RUNTIME_DIR=/run/systemd/manager",
                   *argv)

    def systemctl(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("systemctl", "--user", "--no-pager", *args)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        listing = self.systemctl("show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in listing.splitlines() if "=" in line)

    def stop(self) -> None:
        self.peer.stop(20)
        for hierarchy in self._hierarchies():
            base = hierarchy / self.cgroup
            if not base.exists():
                continue
            for pid in _cgroup_pids(base):  # only what this manager started, if it was killed
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda b=base: not _cgroup_pids(b), 10, "the manager's processes to end")
            for directory in sorted(base.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [base]:
                if directory.is_dir():
                    directory.rmdir()

    @staticmethod
    def _hierarchies() -> list[Path]:
        cgroups = Path("/sys/fs/cgroup")
        if (cgroups / "cgroup.procs").exists():
            return [cgroups]
        return sorted({h.resolve() for h in cgroups.iterdir() if (h / "cgroup.procs").exists()})


def _cgroup_pids(base: Path) -> list[int]:
    return [int(pid) for procs in base.rglob("cgroup.procs") for pid in procs.read_text().split()]


def metric(text: str, name: str, **labels: str) -> float | None:
    wanted = "".join(f'(?=[^}}]*{key}="{value}")' for key, value in labels.items())
    match = re.search(rf"^{name}{{{wanted}[^}}]*}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def prepare(installed: Installed, work: Path, server, s3, port: int, snmp_port: int, nut_port: int) -> None:
    """The service's /etc/vigil (the installed one plus this test's config, SSH and CA files) and /srv."""
    uid, gid = (int(n) for n in installed.account()[2:4])
    etc_vigil = work / "etc" / "vigil"
    shutil.copytree(installed.path("/etc/vigil"), etc_vigil)
    os.setxattr(etc_vigil, "trusted.overlay.opaque", b"y")  # nothing from this machine's /etc/vigil
    (etc_vigil / "vigil.yaml").write_text(CONFIG.format(port=port, ssh_port=server.port, work=work,
                                                        s3_url=s3.endpoint_url, snmp_port=snmp_port,
                                                        nut_port=nut_port))
    shutil.copy(server.key_file, etc_vigil / "id_ed25519")
    shutil.copy(server.known_hosts, etc_vigil / "known_hosts")
    shutil.copy(s3.ca_file, etc_vigil / "s3-ca.pem")
    for path in etc_vigil.rglob("*"):
        os.chown(path, 0, 0 if path.name == "credentials" else gid)
        path.chmod(0o700 if path.is_dir() else 0o640)  # files root:vigil 0640, as an admin would
    os.chown(etc_vigil, 0, gid)
    etc_vigil.chmod(0o750)
    for name in ("etc.work", "srv/vigil-test/dumps"):
        (work / name).mkdir(parents=True)

    repo = ResticRepo(work / "srv" / "vigil-test", "restic")
    repo.backup()
    (work / "restic-password").write_text(PASSWORD + "\n")
    (work / "restic-password").chmod(0o600)
    for day in ("2026-11-20", "2026-11-21"):
        (work / "srv" / "vigil-test" / "dumps" / f"erp-{day}.sql.gz").write_bytes(gzip.compress(b"-- dump\n"))
    for name, value in (("s3-id", s3.access_key_id), ("s3-key", s3.secret_access_key), ("ups-community", "apc")):
        (work / name).write_text(value)
        (work / name).chmod(0o600)
    client = s3.client()
    client.create_bucket(Bucket="offsite")  # the newest dump, copied off site over HTTPS
    client.put_object(Bucket="offsite", Key="erp/erp-2026-11-21.sql.gz", Body=gzip.compress(b"-- dump\n"))
    for path in [work / "srv", *(work / "srv").rglob("*")]:
        os.chown(path, uid, gid)  # the agent's: restic check writes its lock into the repository
    (work / "test.conf").write_text(DROP_IN.format(work=work))


def test_the_installed_unit_runs_the_agent_under_its_sandbox(installed, tmp_path, snmp_lab, nut_lab):
    need("restic", "apt-get install restic")
    port = free_port()
    with sshd(tmp_path / "sshd") as server, moto(tmp_path / "moto", make_pki(tmp_path / "pki")) as s3:
        prepare(installed, tmp_path, server, s3, port, snmp_lab.port, nut_lab.port)
        manager = Manager(installed, tmp_path)
        try:
            manager.wait_ready()
            check_the_service(manager, installed, tmp_path, port)
        finally:
            manager.systemctl("stop", "vigil")
            manager.stop()


def check_the_service(manager: Manager, installed: Installed, work: Path, port: int) -> None:
    log = work / "agent.log"
    started = manager.systemctl("start", "vigil")  # Type=notify: returns once READY=1 came
    assert started.returncode == 0, manager.systemctl("status", "vigil").stdout + _tail(log)
    state = manager.show("vigil", "ActiveState", "StatusText", "MainPID", "WatchdogTimestampMonotonic")
    assert state["ActiveState"] == "active" and state["StatusText"].startswith("serving http://127.0.0.1:")

    # the sandbox really is there: user, no capabilities, seccomp, a user namespace
    status = Path(f"/proc/{state['MainPID']}/status").read_text()
    uid = installed.account()[2]
    assert re.search(rf"^Uid:\s+{uid}\s", status, re.M) and re.search(r"^CapEff:\s+0+$", status, re.M)
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^Seccomp:\s+2$", status, re.M)
    assert Path(f"/proc/{state['MainPID']}/uid_map").read_text().split() != ["0", "0", "4294967295"]

    url = f"http://127.0.0.1:{port}/metrics"
    text = every_job_up(url, log)
    runbook = http_get(f"http://127.0.0.1:{port}/runbooks/BackupMissed")
    assert runbook[0] == 200 and runbook[1].startswith(b"# BackupMissed\n"), "served from the installed copy"
    # the host collector: /proc/stat, meminfo, loadavg, mounts, diskstats, net/dev
    for name in ("vigil_server_cpu_seconds_total", "vigil_server_memory_total_bytes", "vigil_server_load1",
                 "vigil_server_filesystem_size_bytes", "vigil_server_network_receive_bytes_total",
                 "vigil_server_boot_time_timestamp_seconds"):
        assert metric(text, name, target="monitor") is not None, name
    # UPS units over SNMP (UDP, the community by credential) and NUT (TCP)
    assert metric(text, "vigil_ups_battery_charge_ratio", target="ups-snmp") == 1
    assert metric(text, "vigil_ups_on_battery", target="ups-nut") == 1
    # unprivileged ping: datagram ICMP sockets (AF_INET, AF_INET6), no capability, the vigil group in the host's
    # net.ipv4.ping_group_range
    for target in ("ping", "ping6"):
        assert metric(text, "vigil_probe_success", target=target) == 1, _tail(log)
        assert metric(text, "vigil_probe_icmp_loss_ratio", target=target) == 0
    # every backup read on both sides: restic locally (read-only) and through ssh, files, sftp,
    # and S3 over HTTPS with the job's own CA
    for backup in ("fileserver-nightly", "erp-database-dump", "erp-dump-cloud"):
        for location in ("primary", "offsite"):
            assert metric(text, "vigil_backup_last_success_timestamp_seconds", backup=backup, location=location)
        assert metric(text, "vigil_backup_status", backup=backup, status="unreachable") == 0
    # restic check wrote its lock through ReadWritePaths= and over sftp
    verified = wait_until(lambda: metric(http_get(url)[1].decode(), "vigil_backup_verify_ok",
                                         backup="fileserver-nightly") is not None or None, 60, "restic check")
    assert verified and metric(http_get(url)[1].decode(), "vigil_backup_verify_ok",
                               backup="fileserver-nightly") == 1, _tail(log)
    database = installed.path("/var/lib/vigil/vigil.db")
    assert database.exists() and database.stat().st_uid == int(uid)
    assert "state database problem" not in log.read_text()

    assert int(manager.show("vigil", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]) > 0
    assert manager.systemctl("reload", "vigil").returncode == 0
    wait_until(lambda: "reloaded config=/etc/vigil/vigil.yaml" in log.read_text(), 10, "the reload")

    assert manager.systemctl("stop", "vigil").returncode == 0
    stopped = manager.show("vigil", "Result", "ExecMainStatus")
    assert stopped == {"Result": "success", "ExecMainStatus": "0"}, _tail(log)


def every_job_up(url: str, log: Path, jobs: int = 9, timeout: float = 60) -> str:
    """The metrics once all `jobs` report vigil_up 1; else fail with what is down and why."""
    deadline = time.monotonic() + timeout
    while True:
        text = http_get(url)[1].decode()
        ups = re.findall(r"^vigil_up\{.*\} \S+$", text, re.M)
        if len(ups) == jobs and all(up.endswith(" 1.0") for up in ups):
            return text
        if time.monotonic() > deadline:
            pytest.fail("not every job is up under the sandbox:\n" + "\n".join(ups) + _tail(log))
        time.sleep(0.5)


def _tail(log: Path) -> str:
    return "\n" + log.read_text()[-3000:] if log.exists() else ""


def snapshot(installed: Installed) -> dict[str, tuple]:
    """Owner, mode and content hash of everything the installer owns outside the venv."""
    paths = [installed.path(p) for p in ("/etc/passwd", "/etc/group", "/var/lib/vigil")]
    paths += sorted(installed.path("/etc/vigil").rglob("*")) + [installed.path("/etc/vigil")]
    paths += sorted(installed.path("/etc/systemd").rglob("*"))
    return {str(p): (*owner_and_mode(p), hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
            for p in paths}


def test_a_second_run_upgrades_the_agent_and_keeps_the_config(installed):
    config = installed.path("/etc/vigil/vigil.yaml")
    config.write_text(config.read_text() + "  - {name: monitor-01-fast, kind: host, interval: 15s, timeout: 5s}\n")
    before = snapshot(installed)
    done = installed.install()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "keeping /etc/vigil/vigil.yaml" in done.stdout and "created the system user" not in done.stdout
    assert snapshot(installed) == before
    assert "monitor-01-fast" in config.read_text()
    assert "OK, 2 targets" in run(installed.path("/opt/vigil/bin/vigil"), "check-config", "-c", config).stdout
    assert not installed.systemctl_calls.exists()


def test_uninstall_removes_the_agent_and_keeps_config_and_state(installed):
    done = installed.install("--uninstall")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not installed.path("/opt/vigil").exists() and not installed.path("/usr/share/doc/vigil").exists()
    assert not installed.path("/etc/systemd/system/vigil.service").exists()
    assert installed.path("/etc/vigil/vigil.yaml").exists() and installed.path("/var/lib/vigil").is_dir()
    assert "kept /etc/vigil" in done.stdout and "/var/lib/vigil" in done.stdout
    assert not installed.systemctl_calls.exists()
