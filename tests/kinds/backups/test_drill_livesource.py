"""A drill's live source: the file on a real sshd (this machine, through the lab's OpenSSH) or on this host,
hashed only while it provably is what the backup holds; everything else is skipped with its reason.

The sshd runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so its root sessions read only what a
file's mode lets them, as an unprivileged vigil account would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import AgentConfig, ConfigError, load_config
from agent.statedb import StateDB
from checks.history import BackupHistory
from checks.model import Candidate
from checks.sources.livesource import LiveSource, SourceSkipped
from tests.lab.backup_tools import PASSWORD, BorgRepo, ResticRepo
from tests.lab.sshd import Sshd, sshd

THEN = 1_700_000_000  # the files' mtime: far from the backup's time, as most files' are
BACKUP = THEN + 3600
NOBODY = 65534
HOSTILE = ("a b", "it's", 'say "hi"', "$(touch PWNED)", "`touch PWNED`; touch PWNED", "new\nline", "-n", "*")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Sshd:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("the lab server drops root's file capabilities, which needs root")
    with sshd(tmp_path_factory.mktemp("sshd"), without=("dac_override", "dac_read_search")) as running:
        yield running


def target(server: Sshd, **changes) -> dict:
    return {"name": "fs1", "kind": "ssh", "host": server.host, "port": server.port, "user": server.user,
            "key_file": str(server.key_file), "known_hosts": str(server.known_hosts), **changes}


def job(compare: dict) -> dict:
    return {"name": "nightly", "schedule": "0 1 * * *", "deadline": "4h",
            "primary": {"kind": "files", "path": "/srv/backups"}, "drill": {"compare": compare}}


def live(context, targets: list[dict], **compare) -> LiveSource:
    config = AgentConfig.model_validate({"targets": targets, "backups": [job(compare)]})
    return LiveSource(config.backups[0].drill.compare, context)


@pytest.fixture(params=["remote", "stream", "local"])
def sources(request, context):
    """Each way of reading the live source: sha256sum on the ssh target, SFTP into a hash here, this host."""
    made = []

    def source(**compare) -> LiveSource:
        if request.param == "local":
            made.append(live(context, [], target="local", **compare))
        else:
            server = request.getfixturevalue("server")
            made.append(live(context, [target(server)], target="fs1", hash=request.param, **compare))
        return made[-1]

    yield source
    for each in made:
        each.close()


@pytest.fixture
def source(sources) -> LiveSource:
    return sources()


def file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    os.utime(path, (THEN, THEN))
    return path


def backed_up(path: Path) -> Candidate:
    """What a backup recorded of the file as it is now."""
    found = path.stat()
    return Candidate("snap1", str(path), found.st_size, found.st_mtime, found.st_ctime)


def skipped(source: LiveSource, candidate: Candidate, backed_up_at: float = BACKUP) -> str:
    with pytest.raises(SourceSkipped) as caught:
        source.sha256(candidate, backed_up_at)
    return str(caught.value)


def next_second() -> None:
    """Wait for the next whole second, so that a change now has another ctime than the file had."""
    time.sleep(1.02 - time.time() % 1)


def test_an_unchanged_file_gives_its_digest(source, tmp_path):
    content = os.urandom(3 << 20)
    path = file(tmp_path / "data.bin", content)
    assert source.sha256(backed_up(path), BACKUP) == hashlib.sha256(content).hexdigest()


def test_an_empty_file_gives_the_empty_digest(source, tmp_path):
    path = file(tmp_path / "empty", b"")
    assert source.sha256(backed_up(path), BACKUP) == hashlib.sha256(b"").hexdigest()


def test_a_file_whose_size_changed_is_skipped(source, tmp_path):
    path = file(tmp_path / "log.txt", b"one line\n")
    candidate = backed_up(path)
    file(path, b"one line\nand another\n")
    assert skipped(source, candidate).endswith(f"the source {where(source, path)} changed since the backup "
                                               "(its size was 9, is 21)")


def test_new_content_with_its_mtime_put_back_is_skipped_by_its_ctime(source, tmp_path):
    path = file(tmp_path / "same-size.txt", b"version 1")
    candidate = backed_up(path)
    next_second()
    file(path, b"version 2")  # same size, same mtime (os.utime): only the ctime tells
    assert path.stat().st_mtime == candidate.mtime and path.stat().st_size == candidate.size
    assert f"the source {where(source, path)} changed since the backup (its ctime was" in skipped(source, candidate)


def test_a_missing_file_is_skipped(source, tmp_path):
    path = file(tmp_path / "gone.txt", b"soon gone")
    candidate = backed_up(path)
    path.unlink()
    assert skipped(source, candidate) == f"the source {where(source, path)} is gone"


def test_a_file_replaced_by_a_directory_is_skipped(source, tmp_path):
    path = file(tmp_path / "was-a-file", b"x")
    candidate = backed_up(path)
    path.unlink()
    path.mkdir()
    assert skipped(source, candidate) == f"the source {where(source, path)} is no longer a regular file"


def test_a_file_modified_within_two_seconds_of_the_backup_is_skipped(source, tmp_path):
    path = file(tmp_path / "busy.db", b"written as the backup ran")
    assert "was modified within 2s of the backup, which may hold an earlier version" in \
        skipped(source, backed_up(path), backed_up_at=THEN + 1)


def test_a_path_that_leaves_the_root_is_skipped(context, tmp_path):
    source = live(context, [], target="local", root=str(tmp_path))
    assert skipped(source, Candidate("snap1", "/../../etc/shadow", 1, THEN, THEN)) == \
        f"'/../../etc/shadow' is no path under the source's root {tmp_path}"


def test_a_root_maps_the_backed_up_path_to_the_source(sources, tmp_path):
    """A backup of /srv/data, read where that tree is mounted on the source host (`root:`)."""
    content = b"under another root"
    (tmp_path / "srv").mkdir()
    found = file(tmp_path / "srv" / "data.txt", content).stat()
    candidate = Candidate("snap1", "/srv/data.txt", found.st_size, found.st_mtime, found.st_ctime)
    assert sources(root=str(tmp_path)).sha256(candidate, BACKUP) == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_name_is_one_quoted_argument(source, tmp_path, name):
    content = f"the file named {name!r}".encode()
    path = file(tmp_path / name, content)
    assert source.sha256(backed_up(path), BACKUP) == hashlib.sha256(content).hexdigest()
    assert not list(tmp_path.glob("PWNED")) and not Path.home().joinpath("PWNED").exists()


def test_a_file_the_account_may_not_read_is_skipped_naming_the_fix(server, context, tmp_path):
    path = file(tmp_path / "private.key", b"secret")
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o600)
    for how in ("remote", "stream"):
        reason = skipped(live(context, [target(server)], target="fs1", hash=how), backed_up(path))
        assert reason == (f"vigil's account may not read the source fs1:{path} (permission denied): give it read "
                          "access (a group or an ACL) to compare with the live source")


def test_a_local_file_this_account_may_not_read_is_skipped(tmp_path):
    """As the agent without root's file capabilities (setpriv drops them from a child) reads it."""
    path = file(tmp_path / "private.key", b"secret")
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o600)
    found = path.stat()
    script = f"""
from agent.clock import Clock
from checks.model import Candidate, CompareConfig
from checks.sources.livesource import LiveSource, SourceSkipped
try:
    LiveSource(CompareConfig(target="local"), type("Context", (), {{"clock": Clock()}})).sha256(
        Candidate("snap1", {str(path)!r}, {found.st_size}, {found.st_mtime}, {found.st_ctime}), {BACKUP})
except SourceSkipped as exc:
    print(exc)
"""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("dropping root's file capabilities needs root")
    said = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
                           "-dac_override,-dac_read_search", "--", sys.executable, "-c", script],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert said == (f"vigil's account may not read the source {path} (permission denied): give it read access "
                    "(a group or an ACL) to compare with the live source")


def test_a_windows_server_is_skipped_without_connecting(server, context, tmp_path):
    path = file(tmp_path / "data.txt", b"x")
    reason = skipped(live(context, [target(server, os="windows")], target="fs1"), backed_up(path))
    assert reason == ("fs1 runs Windows, whose ctime is the creation time: the live source is compared on Linux "
                      "and other POSIX servers only")


def test_a_backup_that_recorded_no_ctime_cannot_be_compared(source, tmp_path):
    path = file(tmp_path / "data.txt", b"x")
    found = path.stat()
    assert "the backup recorded no mtime and ctime" in skipped(
        source, Candidate("snap1", str(path), found.st_size, found.st_mtime, None))


def test_the_source_is_reached_through_the_targets_jump_host(server, context, tmp_path):
    content = b"behind a bastion"
    path = file(tmp_path / "data.txt", content)
    source = live(context, [target(server, name="bastion"), target(server, via="bastion")], target="fs1")
    try:
        assert source.sha256(backed_up(path), BACKUP) == hashlib.sha256(content).hexdigest()
        assert len(source._clients) == 2
    finally:
        source.close()
    assert not source._clients


def test_an_unreachable_server_is_a_skip_naming_it(context, tmp_path):
    path = file(tmp_path / "data.txt", b"x")
    keys = tmp_path / "known_hosts"
    keys.write_text("")
    key = tmp_path / "id"
    key.write_text("")
    source = live(context, [{"name": "fs1", "kind": "ssh", "host": "127.0.0.1", "port": 1, "user": "vigil",
                             "key_file": str(key), "known_hosts": str(keys), "command_timeout": "2s"}],
                  target="fs1")
    assert skipped(source, backed_up(path)).startswith(f"cannot read the source fs1:{path}: ")


def test_a_closed_source_reads_nothing_more(server, context, tmp_path):
    path = file(tmp_path / "data.txt", b"x")
    source = live(context, [target(server)], target="fs1")
    source.close()
    assert skipped(source, backed_up(path)).endswith("the drill was stopped")
    assert not source._clients


@pytest.mark.parametrize("how", ["local", "stream"])
def test_a_drill_stopped_mid_hash_ends_it_from_another_thread(how, request, context, tmp_path):
    """close() (a stop, a reload, the drill's timeout) from another thread ends a hash that would take hours."""
    path = tmp_path / "sparse.img"
    with path.open("wb") as sparse:
        sparse.truncate(1 << 40)  # a TiB of holes
    os.utime(path, (THEN, THEN))
    source = live(context, [], target="local") if how == "local" else \
        live(context, [target(request.getfixturevalue("server"))], target="fs1", hash="stream")
    stopping = threading.Timer(0.5, source.close)
    stopping.start()
    try:
        reason = skipped(source, backed_up(path))
    finally:
        stopping.join()
    expected = "the drill was stopped" if how == "local" else f"cannot read the source fs1:{path}"
    assert reason.startswith(expected), reason
    assert not source._clients


def where(source: LiveSource, path: Path) -> str:
    return f"fs1:{path}" if source._target is not None else str(path)


# -- the config ---------------------------------------------------------------------------------------------

def test_compare_names_an_ssh_target_which_it_gets(server):
    config = AgentConfig.model_validate({"targets": [target(server, name="bastion"), target(server, via="bastion")],
                                         "backups": [job({"target": "fs1"})]})
    ssh, jump = config.backups[0].drill.compare.linked
    assert (ssh, jump) == (config.targets[1], config.targets[0])
    assert AgentConfig.model_validate({"backups": [job({"target": "local"})]}).backups[0].drill.compare.linked == \
        (None, None)


@pytest.mark.parametrize(("targets", "said"), [
    ("[{name: fs1, kind: host}]", "`fs1` is a host target, not an ssh one: the live source is read over SSH from "
                                  "an ssh target (none configured), or `local` on this host"),
    ("[]", "no target is named `fs1`: the live source is read over SSH from an ssh target (none configured), or "
           "`local` on this host"),
])
def test_compare_naming_no_ssh_target_is_a_config_error_at_its_line(tmp_path, targets, said):
    config = tmp_path / "vigil.yaml"
    config.write_text(f"""\
targets: {targets}
backups:
  - name: nightly
    schedule: "0 1 * * *"
    deadline: 4h
    primary: {{kind: files, path: /srv/backups}}
    drill:
      compare:
        target: fs1
""")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value) == f"{config}:9: backups[0].drill.compare.target: {said}"


# -- a drill end to end: restic restores, the live source vouches ---------------------------------------------

E2E = """
state_dir: {state}
targets: [TARGETS]
backups:
  - name: fileserver-nightly
    schedule: "0 1 * * *"
    deadline: 4h
    primary: PRIMARY
    drill: {files: 10, max_bytes: 1MiB, compare: COMPARE}
"""


def backed_up_with(tool: str, tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    """A restic snapshot or a borg archive of `files` (the source), taken now: the source and the location."""
    repo = ResticRepo(tmp_path) if tool == "restic" else BorgRepo(tmp_path)
    for name, content in files.items():
        file(repo.data / name, content)
    (repo.data / "busy.log").write_bytes(b"written as the backup started\n")  # its mtime: the backup's second
    if tool == "restic":
        repo.run("backup", str(repo.data), "--host", "fileserver")
        return repo.data, f'{{kind: restic, repository: {repo.repository}, password: "${{env:VIGIL_TEST_SECRET}}"}}'
    repo.run("create", f"{repo.repository}::nightly", str(repo.data))
    return repo.data, f'{{kind: borg, repository: {repo.repository}, passphrase: "${{env:VIGIL_TEST_SECRET}}"}}'


@pytest.mark.parametrize("where", ["fs1", "local"])
@pytest.mark.parametrize("tool", ["restic", "borg"])
def test_a_source_changed_after_the_backup_is_never_a_false_failure(tool, where, request, tmp_path, write_config,
                                                                    monkeypatch, capsys):
    """Backed up: three files, and a fourth written as the backup started; then one grows, one gets new content
    with its mtime put back, one stays. The drill matches the unchanged one against the source, and restores the
    others as verified by the tool only, saying why the source could not vouch for them: never a failure."""
    monkeypatch.setenv("VIGIL_TEST_SECRET", PASSWORD)
    data, primary = backed_up_with(tool, tmp_path, dict.fromkeys(("same.txt", "grown.txt", "rewritten.txt"),
                                                                 b"as backed up\n"))
    next_second()
    file(data / "grown.txt", b"as backed up\nand a line more\n")
    file(data / "rewritten.txt", b"AS BACKED UP\n")
    targets = json_target(request.getfixturevalue("server")) if where == "fs1" else ""
    config = write_config(E2E.replace("TARGETS", targets).replace("PRIMARY", primary)
                          .replace("COMPARE", f"{{target: {where}}}"))

    assert main(["drill", "fileserver-nightly", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    source = f"{where}:{data}" if where == "fs1" else str(data)
    db = StateDB(tmp_path / "state")
    history = BackupHistory(db, "fileserver-nightly")
    (drill,) = history.drills("primary")
    files = {Path(file.path).name: file for file in history.drill_files("primary", drill.started_at)}
    db.close()
    assert drill.ok is True and set(files) == {"same.txt", "grown.txt", "rewritten.txt", "busy.log"}, out
    assert (files["same.txt"].result, files["same.txt"].reference) == ("match", "source")
    assert (files["grown.txt"].result, files["grown.txt"].reference) == ("restored", "tool")
    assert files["grown.txt"].detail == (f"source skipped: the source {source}/grown.txt changed since the backup "
                                         "(its size was 13, is 29)")
    assert (files["rewritten.txt"].result, files["rewritten.txt"].reference) == ("restored", "tool")
    assert f"source skipped: the source {source}/rewritten.txt changed since the backup (its ctime was" in \
        files["rewritten.txt"].detail
    assert files["busy.log"].detail == (f"source skipped: the source {source}/busy.log was modified within 2s of "
                                        "the backup, which may hold an earlier version of that second")
    assert "MATCH" in out and "FAILED" not in out and "MISMATCH" not in out


def json_target(server: Sshd) -> str:
    return json.dumps(target(server))


@pytest.mark.parametrize(("primary", "server", "said"), [
    ("{kind: restic, repository: /srv/restic, password: '${env:HOME}'}", ", os: windows",
     "backups[0].drill.compare.target: `fs1` runs Windows, whose ctime is the creation time: every file would be "
     "skipped; compare with a Linux server"),
    ("{kind: files, path: /srv/backups}", "",
     "backups[0].drill.compare: only restic and borg record the ctime the live source is compared by: every file "
     "of files locations would be skipped"),
])
def test_a_live_source_that_could_vouch_for_no_file_is_a_warning(tmp_path, primary, server, said):
    config = tmp_path / "vigil.yaml"
    config.write_text(f"""\
targets:
  - {{name: fs1, kind: ssh, host: 127.0.0.1, user: vigil, key_file: {config}, known_hosts: {config}{server}}}
backups:
  - name: nightly
    schedule: "0 1 * * *"
    deadline: 4h
    primary: {primary}
    drill:
      compare: {{target: fs1}}
""")
    warnings = [str(warning) for warning in load_config(config).warnings]
    assert [warning for warning in warnings if "compare" in warning] == [f"{config}:9: {said}"]
