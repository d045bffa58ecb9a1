"""Child tools run in their own process group: a timeout or a stop leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from agent import children
from tests.lab.harness import wait_until

# a tool that starts two helpers, one in its own group (as restic starts ssh), and hangs;
# the three PIDs go to $1
HANGS = 'sleep 600 & one=$!; setsid sleep 600 & echo "$$ $one $!" > "$1"; wait'


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie waiting for its parent


def pids(path) -> list[int]:
    return [int(pid) for pid in path.read_text().split()] if path.exists() and path.read_text().strip() else []


@pytest.fixture
def out(tmp_path):
    """Where the tool writes its PIDs; whatever a failing test leaves behind is killed by PID."""
    path = tmp_path / "pids"
    yield path
    for pid in pids(path):
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_timeout_kills_the_whole_group(out):
    with pytest.raises(subprocess.TimeoutExpired):
        children.run(["sh", "-c", HANGS, "sh", str(out)], dict(os.environ), timeout=0.5)
    assert len(pids(out)) == 3
    wait_until(lambda: all(gone(pid) for pid in pids(out)), 5, "the killed group to exit")  # SIGKILL is not instant


def test_stop_all_kills_running_groups_and_refuses_new_ones(out):
    done: list[subprocess.CompletedProcess] = []
    thread = threading.Thread(target=lambda: done.append(
        children.run(["sh", "-c", HANGS, "sh", str(out)], dict(os.environ), timeout=30)), daemon=True)
    thread.start()
    wait_until(lambda: len(pids(out)) == 3, 10, "the tool and its helpers")
    assert children.stop_all(grace=1.0) == 1
    thread.join(10)
    # the tool ends by the TERM or when its killed helpers let its `wait` return: either way, it ended
    assert not thread.is_alive() and done[0].returncode in (-15, -9, 0)
    wait_until(lambda: all(gone(pid) for pid in pids(out)), 5, "the stopped group to exit")
    with pytest.raises(children.Stopping, match="the agent is stopping"):
        children.run(["true"], dict(os.environ), timeout=5)


def test_undecodable_output_is_replaced_not_raised():
    done = children.run(["sh", "-c", "printf 'ok \\377\\n'"], dict(os.environ), timeout=10)
    assert done.returncode == 0 and done.stdout == "ok \ufffd\n"


def test_a_tool_writing_without_end_is_stopped_at_the_limit(out):
    script = 'echo "$$" > "$1"; exec yes a-line-of-output'
    with pytest.raises(children.OutputTooLarge, match="wrote more than 1 MiB"):
        children.run(["sh", "-c", script, "sh", str(out)], dict(os.environ), timeout=30, max_bytes=1 << 20)
    wait_until(lambda: all(gone(pid) for pid in pids(out)), 5, "the stopped tool to exit")


def test_a_reply_within_the_limit_is_read_whole_from_both_streams():
    script = "head -c 3000000 /dev/zero | tr '\\0' o; echo done >&2"
    done = children.run(["sh", "-c", script], dict(os.environ), timeout=30, max_bytes=4 << 20)
    assert len(done.stdout) == 3_000_000 and set(done.stdout) == {"o"} and done.stderr == "done\n"


def test_a_tool_s_endless_output_is_one_clear_reason(tmp_path, monkeypatch):
    from checks.sources.cli import ToolError, run

    tool = tmp_path / "restic"
    tool.write_text("#!/bin/sh\nexec yes '{}'\n")
    tool.chmod(0o755)
    monkeypatch.setattr(children, "MAX_OUTPUT", 1 << 20)
    with pytest.raises(ToolError, match=rf"^restic snapshots wrote more than 1 MiB and was stopped on /srv/r; "
                                         rf"is {tool} the real restic"):
        run([str(tool), "snapshots"], {}, timeout=30, what="restic snapshots", where="/srv/r")


def test_a_tool_gets_only_what_it_needs_of_the_agent_s_environment(tmp_path, fault_report):
    """Every child (restic, borg, and the ssh they start) inherited every `${env:}` secret of the agent: here
    the vCenter password and the agent's own copy of the restic password went to both tools."""
    import shutil

    import yaml

    from tests.conftest import ROOT, vigil_argv
    from tests.lab.backup_tools import PASSWORD, BorgRepo, ResticRepo

    restic, borg = ResticRepo(tmp_path), BorgRepo(tmp_path)
    restic.backup()
    borg.create("nightly")
    wrappers = {}
    for tool, binary in (("restic", restic.binary), ("borg", shutil.which(borg.binary))):
        wrappers[tool] = tmp_path / f"{tool}-wrapper"
        wrappers[tool].write_text(f'#!/bin/sh\nenv > "{tmp_path}/{tool}.env"\nexec {binary} "$@"\n')
        wrappers[tool].chmod(0o755)
    due = {"schedule": "0 1 * * *", "deadline": "4h"}
    config = tmp_path / "vigil.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "targets": [
        {"name": "vcenter", "kind": "vmware", "host": "127.0.0.1", "port": 1, "user": "u",
         "password": "${env:VIGIL_TEST_VCENTER_PW}"}], "backups": [
        {"name": "restic", **due, "primary": {"kind": "restic", "repository": restic.repository,
                                              "password": "${env:VIGIL_TEST_RESTIC_PW}",
                                              "env": {"RESTIC_COMPRESSION": "auto"},
                                              "binary": str(wrappers["restic"])}},
        {"name": "borg", **due, "primary": {"kind": "borg", "repository": borg.repository,
                                            "passphrase": "${env:VIGIL_TEST_BORG_PW}",
                                            "binary": str(wrappers["borg"])}}]}))
    env = {"VIGIL_TEST_VCENTER_PW": "vcenter-password-of-the-agent", "VIGIL_TEST_RESTIC_PW": PASSWORD,
           "VIGIL_TEST_BORG_PW": PASSWORD}
    subprocess.run(vigil_argv("once", "-c", str(config)), cwd=ROOT, capture_output=True, text=True, timeout=120,
                   env={**os.environ, **env})
    seen = {tool: dict(line.split("=", 1) for line in (tmp_path / f"{tool}.env").read_text().splitlines()
                       if "=" in line) for tool in wrappers}
    leaked = {tool: sorted(set(variables) & set(env)) for tool, variables in seen.items()}
    assert leaked == {"restic": [], "borg": []}, leaked
    assert seen["restic"]["RESTIC_PASSWORD"] == PASSWORD and seen["restic"]["RESTIC_COMPRESSION"] == "auto"
    assert seen["borg"]["BORG_PASSPHRASE"] == PASSWORD
    assert all(seen[tool]["PATH"] == os.environ["PATH"] for tool in seen)
    fault_report(fault="child tools and the agent's ${env:} secrets", expected="restic and borg get their own "
                 "variables and the basics only", observed=", ".join(f"{tool}: {len(seen[tool])} variables"
                                                                     for tool in seen))


# Streaming (restore drills): stdout as it arrives, stderr capped, cancellable from another thread.

class Collected:
    """A sink keeping what it was given, optionally refusing more than `limit` bytes."""

    def __init__(self, limit: int | None = None):
        self.data = bytearray()
        self.limit = limit

    def write(self, data: bytes) -> None:
        self.data += data
        if self.limit is not None and len(self.data) > self.limit:
            raise ValueError("more than the sink takes")


def test_stream_passes_stdout_whole_as_it_arrives(tmp_path):
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(5_000_000))
    sink = Collected()
    children.stream(["cat", str(payload)], dict(os.environ), 30, sink)
    assert bytes(sink.data) == payload.read_bytes()


def test_a_failed_stream_keeps_only_the_tail_of_stderr():
    script = "yes an-error-line | head -c 5000000 >&2; echo last-words >&2; exit 3"
    with pytest.raises(subprocess.CalledProcessError) as failed:
        children.stream(["sh", "-c", script], dict(os.environ), 30, Collected(), max_stderr=4096)
    assert failed.value.returncode == 3 and len(failed.value.stderr) == 4096
    assert failed.value.stderr.endswith("last-words\n") and "an-error-line\n" in failed.value.stderr


def test_a_cancel_from_another_thread_kills_the_streaming_group(out):
    cancel = threading.Event()
    failed: list[BaseException] = []

    def drill():
        try:
            children.stream(["sh", "-c", HANGS, "sh", str(out)], dict(os.environ), 60, Collected(), cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 — the test reads it
            failed.append(exc)

    thread = threading.Thread(target=drill, daemon=True)
    thread.start()
    wait_until(lambda: len(pids(out)) == 3, 10, "the tool and its helpers")
    assert children._live
    cancel.set()
    thread.join(10)
    assert not thread.is_alive() and isinstance(failed[0], children.Cancelled)
    assert str(failed[0]) == "sh was cancelled" and not children._live
    wait_until(lambda: all(gone(pid) for pid in pids(out)), 5, "the cancelled group to exit")


def test_a_sink_that_refuses_more_kills_the_tool(out):
    script = 'echo "$$" > "$1"; exec yes a-line-of-output'
    with pytest.raises(ValueError, match="more than the sink takes"):
        children.stream(["sh", "-c", script, "sh", str(out)], dict(os.environ), 30, Collected(limit=1 << 20))
    wait_until(lambda: all(gone(pid) for pid in pids(out)), 5, "the refused tool to exit")
    assert not children._live


def test_a_reader_that_stops_early_kills_the_tool(out):
    script = 'echo "$$" > "$1"; exec yes a-line-of-output'
    output = children.chunks(["sh", "-c", script, "sh", str(out)], dict(os.environ), 30)
    assert next(output)
    output.close()
    wait_until(lambda: all(gone(pid) for pid in pids(out)), 5, "the abandoned tool to exit")
    assert not children._live


def test_give_up_kills_a_tool_that_only_retries(out):
    """restic 0.14 retries a missing pack for about 90 s; what it says on the first retry ends it."""
    script = 'echo "$$" > "$1"; while :; do echo "Load(<data/ab>) returned error, retrying" >&2; sleep 1; done'
    with pytest.raises(subprocess.CalledProcessError) as failed:
        children.stream(["sh", "-c", script, "sh", str(out)], dict(os.environ), 60, Collected(),
                        give_up=lambda stderr: "retrying" in stderr)
    assert failed.value.returncode == -signal.SIGKILL and "returned error, retrying" in failed.value.stderr
    wait_until(lambda: all(gone(pid) for pid in pids(out)), 5, "the tool given up on to exit")


def test_stop_all_ends_a_streaming_tool_too(out):
    failed: list[BaseException] = []

    def drill():
        try:
            children.stream(["sh", "-c", HANGS, "sh", str(out)], dict(os.environ), 60, Collected())
        except BaseException as exc:  # noqa: BLE001 — the test reads it
            failed.append(exc)

    thread = threading.Thread(target=drill, daemon=True)
    thread.start()
    wait_until(lambda: len(pids(out)) == 3, 10, "the tool and its helpers")
    assert children.stop_all(grace=1.0) == 1
    thread.join(10)
    assert not thread.is_alive() and isinstance(failed[0], subprocess.CalledProcessError)
    wait_until(lambda: all(gone(pid) for pid in pids(out)), 5, "the stopped group to exit")
