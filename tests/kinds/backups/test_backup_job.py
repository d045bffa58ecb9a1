"""A backup job from end to end: real restic repositories, time moved by the clock."""

from __future__ import annotations

import json
import socket
import subprocess
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import yaml

from agent.cli import main
from agent.collector import Emitter
from checks.config import BackupJobConfig
from checks.job import BackupEvaluation, BackupVerification, backup_jobs
from tests.clocks import FakeClock
from tests.lab.backup_tools import PASSWORD, ResticRepo
from tests.lab.blackhole import syn_dropped, unaccepted
from tests.lab.sshd import make_key

KB = 1000


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def job_context(context, clock):
    return replace(context, clock=clock)


@pytest.fixture
def repos(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    return ResticRepo(tmp_path, "primary"), ResticRepo(tmp_path, "offsite")


def job(primary: ResticRepo, offsite: ResticRepo | None = None, **extra) -> BackupJobConfig:
    def restic(repo):
        return {"kind": "restic", "repository": repo.repository, "password": "${env:VIGIL_TEST_RESTIC}"}

    config = {"name": "fileserver-nightly", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
              "primary": restic(primary), "max_lag": "12h", **extra}
    if offsite is not None:
        config["offsite"] = restic(offsite)
    return BackupJobConfig.model_validate(config)


def run(job) -> Emitter:
    """One run of a backup job's collector, with the catalogue checked strictly."""
    out = Emitter(job.METRICS, strict=True)
    job.collect(out, frozenset({"main"}))
    return out


def metrics(out: Emitter) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in out.samples()}


def status(out: Emitter) -> str:
    (current,) = [s.labels["status"] for s in out.samples() if s.name == "vigil_backup_status" and s.value]
    assert out.verdict.status == current
    return current


def test_from_ok_to_missed_and_back(repos, job_context, clock):
    primary, offsite = repos
    first = primary.backup("2026-11-20 01:10:00", content=b"a" * 100 * KB)
    primary.copy_to(offsite, first)
    check = BackupEvaluation(job(primary, offsite), job_context)

    clock.set("2026-11-20 06:00")
    result = run(check)
    values = metrics(result)
    assert status(result) == "ok" and result.verdict.status == "ok"
    assert values[("vigil_backup_last_success_timestamp_seconds", (("location", "primary"),))] == \
        pytest.approx(clock.time() - (4 * 3600 + 50 * 60))
    assert values[("vigil_backup_size_bytes", (("location", "primary"),))] == 100 * KB
    assert values[("vigil_backup_offsite_lag_seconds", ())] == 0
    assert values[("vigil_backup_next_deadline_timestamp_seconds", ())] == clock.time() + 23 * 3600

    clock.set("2026-11-21 05:01")  # the night of the 21st produced nothing
    result = run(check)
    assert status(result) == "missed"
    assert "no backup completed since the run due at 2026-11-21 01:00 UTC" in result.verdict.detail

    primary.backup("2026-11-21 07:00:00", content=b"a" * 100 * KB)  # late, but there
    assert status(run(check)) == "ok"


def test_an_offsite_copy_that_falls_behind_goes_stale(repos, job_context, clock):
    primary, offsite = repos
    first = primary.backup("2026-11-20 01:10:00")
    primary.copy_to(offsite, first)
    primary.backup("2026-11-21 01:10:00")
    check = BackupEvaluation(job(primary, offsite), job_context)

    clock.set("2026-11-21 06:00")  # the copy of last night's backup has not run yet
    result = run(check)
    assert status(result) == "ok"
    assert metrics(result)[("vigil_backup_offsite_lag_seconds", ())] == pytest.approx(4 * 3600 + 50 * 60)

    clock.set("2026-11-21 13:11")
    result = run(check)
    assert status(result) == "offsite_stale"
    assert "behind the primary (allowed 12h)" in result.verdict.detail


def test_a_backup_much_smaller_than_usual_is_shrunk(repos, job_context, clock):
    primary, _ = repos
    check = BackupEvaluation(job(primary, max_shrink=0.5, min_size="1KB"), job_context)
    for day in (17, 18, 19, 20):
        primary.backup(f"2026-11-{day} 01:10:00", content=bytes(range(256)) * 400)
        clock.set(f"2026-11-{day} 06:00")
        assert status(run(check)) == "ok"
    primary.backup("2026-11-21 01:10:00", content=b"b" * 20 * KB)
    clock.set("2026-11-21 06:00")
    result = run(check)
    assert status(result) == "shrunk" and "below the recent median" in result.verdict.detail
    primary.backup("2026-11-22 01:10:00", content=b"c" * 500)
    clock.set("2026-11-22 06:00")
    assert status(run(check)) == "too_small"


def test_an_unreachable_location_keeps_its_last_success_across_a_restart(repos, job_context, clock, monkeypatch):
    primary, _ = repos
    primary.backup("2026-11-20 01:10:00")
    clock.set("2026-11-20 06:00")
    run(BackupEvaluation(job(primary), job_context))
    before = metrics(run(BackupEvaluation(job(primary), job_context)))

    monkeypatch.setenv("VIGIL_TEST_RESTIC", "wrong password")
    restarted = BackupEvaluation(job(primary), job_context)  # a new process: only the database remembers
    result = run(restarted)
    assert status(result) == "unreachable" and "primary: restic:" in result.verdict.detail
    key = ("vigil_backup_last_success_timestamp_seconds", (("location", "primary"),))
    assert metrics(result)[key] == before[key]
    assert ("vigil_backup_size_bytes", (("location", "primary"),)) not in metrics(result)


def test_verification_runs_on_its_own_schedule_and_finds_damage(repos, job_context, clock):
    primary, _ = repos
    primary.backup("2026-11-20 01:10:00", content=bytes(range(256)) * 4000)
    config = job(primary, verify={"every": "7d", "read_data_subset": "100%"})
    evaluation_job, verification_job = backup_jobs(config)
    assert (verification_job.kind, verification_job.interval) == ("backup_verify", 300)
    evaluation, verification = evaluation_job.factory(job_context), verification_job.factory(job_context)

    clock.set("2026-11-20 06:00")
    assert run(evaluation).verdict.status == "ok"
    verdict = run(verification).verdict
    assert (verdict.status, verdict.detail) == ("ok", "primary: restic check: no errors (read 100%); next due "
                                                      "2026-11-27 06:00 UTC")
    values = metrics(run(evaluation))
    assert values[("vigil_backup_verify_ok", ())] == 1
    assert values[("vigil_backup_verify_timestamp_seconds", ())] == clock.time()

    clock.advance(3600)
    assert run(verification).verdict == verdict, "not due: the same last check, the same next one"

    primary.corrupt_a_pack()
    clock.advance(7 * 86400)
    assert run(verification).verdict.status == "failed"
    result = run(evaluation)
    assert status(result) == "failed" and "integrity check found errors" in result.verdict.detail
    assert metrics(result)[("vigil_backup_verify_ok", ())] == 0


def test_checks_wait_for_their_window_clear_of_the_backup(repos, job_context, clock):
    """By default an hour after the deadline (06:00 for 01:00 + 4h); `at:` picks another time."""
    primary, _ = repos
    primary.backup("2026-11-20 01:10:00")
    verification = BackupVerification(job(primary, verify={"every": "7d"}), job_context)
    for when, first in (("2026-11-20 01:30", "2026-11-20 06:00"), ("2026-11-20 04:00", "2026-11-20 06:00"),
                        ("2026-11-20 08:30", "2026-11-21 06:00")):  # during the backup, after the window
        clock.set(when)
        assert run(verification).verdict.detail == f"primary: never checked, first due {first} UTC", when
    clock.set("2026-11-20 06:20")
    assert run(verification).verdict.detail.startswith("primary: restic check: no errors")

    weekly = BackupVerification(job(primary, verify={"every": "1d", "at": "Sun 10:00"}), job_context)
    clock.set("2026-11-21 10:30")  # a Saturday: not its day (the check above was a day ago)
    assert run(weekly).verdict.detail == "primary: restic check: no errors; next due 2026-11-22 10:00 UTC"
    clock.set("2026-11-22 10:05")  # Sunday
    assert run(weekly).verdict.times["last check"] == clock.time()


def test_a_check_that_never_ran_is_not_ok_but_says_when_it_is_first_due(repos, job_context, clock):
    primary, _ = repos
    primary.backup("2026-11-20 01:10:00")
    verification = BackupVerification(job(primary, verify={"every": "7d"}, timezone="Europe/Brussels"),
                                      job_context)
    clock.set("2026-11-20 03:00")  # the window opens at 06:00 Brussels time (01:00 + the 4h deadline + 1h)
    verdict = run(verification).verdict
    assert (verdict.status, verdict.detail) == ("not_checked", "primary: never checked, first due 2026-11-20 "
                                                               "06:00 CET")
    assert verdict.times == {"next due": datetime(2026, 11, 20, 5, tzinfo=UTC).timestamp()}


def test_a_verification_overdue_for_two_periods_is_unverified(repos, job_context, clock):
    primary, _ = repos
    config = job(primary, verify={"every": "1d"})
    check = BackupEvaluation(config, job_context)
    primary.backup("2026-11-20 01:10:00")
    clock.set("2026-11-20 06:00")
    assert status(run(check)) == "ok"  # newly watched, not yet overdue
    for day in (21, 22, 23):
        primary.backup(f"2026-11-{day} 01:10:00")
    clock.set("2026-11-23 06:00")
    result = run(check)
    assert status(result) == "unverified" and "with no good check" in result.verdict.detail


def test_every_observed_backup_is_in_the_history(repos, job_context, clock):
    primary, offsite = repos
    ids = [primary.backup(f"2026-11-{day} 01:10:00") for day in (18, 19, 20)]
    primary.copy_to(offsite, ids[-1])
    clock.set("2026-11-20 06:00")
    run(BackupEvaluation(job(primary, offsite), job_context))
    rows = job_context.db.query("SELECT location, backup_id, verdict FROM backup_observations ORDER BY completed_at")
    assert [(where, backup_id) for where, backup_id, _ in rows if where == "primary"] == [
        ("primary", backup_id) for backup_id in ids]
    assert sum(1 for where, _, _ in rows if where == "offsite") == 1
    assert dict((b, v) for w, b, v in rows if w == "primary")[ids[-1]] == "ok"


def test_what_was_measured_once_is_exported_on_every_evaluation(tmp_path, job_context, clock, monkeypatch):
    """borg's end time and duration come from one `borg info`; later polls must keep them."""
    from tests.lab.backup_tools import BorgRepo

    repo = BorgRepo(tmp_path)
    repo.create("nightly-1", "2026-11-20T01:10:00")
    monkeypatch.setenv("VIGIL_TEST_BORG", PASSWORD)
    config = BackupJobConfig.model_validate({
        "name": "mail", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
        "primary": {"kind": "borg", "repository": repo.repository, "passphrase": "${env:VIGIL_TEST_BORG}"}})
    check = BackupEvaluation(config, job_context)
    clock.set("2026-11-20 06:00")
    first, second = metrics(run(check)), metrics(run(check))
    duration = ("vigil_backup_duration_seconds", (("location", "primary"),))
    size = ("vigil_backup_size_bytes", (("location", "primary"),))
    assert duration in first and second[duration] == first[duration]
    assert second[size] == first[size] == 1000
    (completed,) = job_context.db.query("SELECT completed_at FROM backup_observations")[0]
    assert completed >= datetime(2026, 11, 20, 1, 10, tzinfo=UTC).timestamp()


def test_a_change_of_status_is_logged_once(repos, job_context, clock, caplog):
    primary, _ = repos
    primary.backup("2026-11-20 01:10:00")
    check = BackupEvaluation(job(primary), job_context)
    caplog.set_level("INFO", logger="checks.job")
    for when in ("2026-11-20 06:00", "2026-11-20 07:00"):
        clock.set(when)
        run(check)
    for when in ("2026-11-21 05:01", "2026-11-21 05:30", "2026-11-21 06:00"):  # an hour and more of missed
        clock.set(when)
        run(check)
    primary.backup("2026-11-21 06:10:00")
    clock.set("2026-11-21 06:20")
    run(check)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "checks.job"]
    assert messages == [
        ("WARNING", "backup missed job=fileserver-nightly detail='no backup completed since the run due at "
                    "2026-11-21 01:00 UTC (deadline 2026-11-21 05:00 UTC)'"),
        ("INFO", "backup ok again job=fileserver-nightly was=missed")]


# Dead locations and hostile tool output, through `vigil once` (the agent's own timeouts) or a whole evaluation.

@pytest.fixture
def silent_port():
    """A TCP peer that accepts (the kernel completes the handshake) and never says a word."""
    with unaccepted() as port:
        yield port


def sftp_job(tmp_path, port: int, **location) -> str:
    key = tmp_path / "id_ed25519"
    if not key.exists():
        make_key(key)
        (tmp_path / "known_hosts").write_text("")
    primary = {"kind": "sftp", "host": "127.0.0.1", "port": port, "user": "vigil", "key_file": str(key),
               "known_hosts": str(tmp_path / "known_hosts"), "path": "/srv/dumps", **location}
    return yaml.safe_dump({"listen": "127.0.0.1:{port}", "state_dir": "{state}", "backups": [
        {"name": "dumps", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h", "interval": "1m",
         "timeout": "3s", "primary": primary}]})


def once(write_config, capsys, text: str) -> tuple[list[str], str]:
    """`vigil once` in-process: the lines of its report (verdicts first), and what it logged."""
    assert main(["once", "-c", str(write_config(text))]) == 1
    printed = capsys.readouterr()
    return printed.out.splitlines(), printed.err


@pytest.fixture
def black_hole():
    with syn_dropped() as port:
        yield port


def restic_s3_job(port: int) -> str:
    primary = {"kind": "restic", "repository": f"s3:http://127.0.0.1:{port}/backups/fileserver",
               "password": "${env:VIGIL_TEST_RESTIC}", "env": {"AWS_ACCESS_KEY_ID": "${env:VIGIL_TEST_RESTIC}",
                                                             "AWS_SECRET_ACCESS_KEY": "${env:VIGIL_TEST_RESTIC}"}}
    return yaml.safe_dump({"listen": "127.0.0.1:{port}", "state_dir": "{state}", "backups": [
        {"name": "dumps", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h", "interval": "1m",
         "timeout": "3s", "primary": primary}]})


@pytest.mark.parametrize("dead", ["sftp-silent", "sftp-black-holed", "restic-s3-black-holed"])
def test_a_dead_location_is_unreachable_before_the_job_times_out(tmp_path, write_config, capsys, request, dead,
                                                                  monkeypatch, fault_report):
    """The location's own timeout (2m by default) outlasts the job's (3s): the job still judges it."""
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    port = request.getfixturevalue("silent_port" if dead == "sftp-silent" else "black_hole")
    if dead.startswith("sftp"):
        text, where = sftp_job(tmp_path, port), f"sftp://vigil@127.0.0.1:{port}/srv/dumps"
    else:
        text, where = restic_s3_job(port), f"s3:http://127.0.0.1:{port}/backups/fileserver"
    lines, _ = once(write_config, capsys, text)
    verdict = lines[0]
    fault_report(fault=f"{dead} location, job timeout 3s", expected="unreachable, naming the location; not timed out",
                 observed=verdict.partition("primary: ")[2][:70])
    assert verdict.startswith("UNREACHABLE  dumps (backup)"), verdict
    assert f"primary: listing {where}: no answer after" in verdict, verdict
    assert "check that the host is up" in verdict and "timed out" not in verdict


def test_no_ssh_banner_is_one_reason_and_one_log_line(tmp_path, write_config, capsys, silent_port, fault_report):
    """paramiko logs the banner error and its traceback at ERROR, a record per line: vigil logs none of it."""
    lines, logged = once(write_config, capsys, sftp_job(tmp_path, silent_port, timeout="1s"))
    reason = f"sftp://vigil@127.0.0.1:{silent_port}: no SSH banner within 1s (is this an SSH server?)"
    fault_report(fault="sftp peer that never sends a banner", expected="the banner named; one log line",
                 observed=lines[0].partition("primary: ")[2][:70])
    assert lines[0].startswith("UNREACHABLE  dumps (backup) ") and lines[0].endswith(
        f"s: primary: {reason}"), lines[0]
    assert "paramiko" not in logged and "Traceback" not in logged, logged  # nor its ERROR line and traceback
    # (threads left running by earlier tests may log beside this one: only this peer's lines count)
    (line,) = [line for line in logged.splitlines() if str(silent_port) in line]
    assert line.endswith(f'WARNING checks.job: backup unreachable job=dumps detail="primary: {reason}"')


def test_an_encrypted_key_without_its_passphrase_says_how_to_give_it(tmp_path, write_config, capsys, silent_port,
                                                                     fault_report):
    key = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "open sesame", "-f", str(key)], check=True)
    (tmp_path / "known_hosts").write_text("")
    lines, _ = once(write_config, capsys, sftp_job(tmp_path, silent_port, key_file=str(key)))
    fault_report(fault="encrypted sftp key, no key_passphrase", expected="the key is encrypted: set key_passphrase",
                 observed=f"key_file {key.name}{lines[0].partition(str(key))[2]}"[:70])
    assert lines[0].startswith("UNREACHABLE  dumps (backup) ") and lines[0].endswith(
        f"s: primary: sftp://vigil@127.0.0.1:{silent_port}: key_file {key} is encrypted; set "
        "key_passphrase: to a reference to its passphrase"), lines[0]


def fake_tool(tmp_path, name: str, replies: dict[str, object]) -> str:
    """A stand-in for restic or borg that answers each subcommand with the given JSON (text as is)."""
    script = tmp_path / name
    cases = "".join(f"    {command}) cat <<'REPLY'\n{reply if isinstance(reply, str) else json.dumps(reply)}\nREPLY\n"
                    "    exit 0;;\n" for command, reply in replies.items())
    script.write_text(f'#!/bin/sh\nfor word in "$@"; do\n  case "$word" in\n{cases}  esac\ndone\nexit 2\n')
    script.chmod(0o755)
    return str(script)


SNAPSHOT = {"id": "a" * 64, "short_id": "aaaaaaaa", "time": "2026-11-20T01:10:00+00:00", "hostname": "fileserver",
            "paths": ["/srv"]}
SUMMARY = {"backup_start": "2026-11-20T01:00:00+00:00", "backup_end": "2026-11-20T01:10:00+00:00",
           "total_files_processed": 3, "total_bytes_processed": 5000}


@pytest.mark.parametrize(("snapshots", "stats", "expected"), [
    ([SNAPSHOT], {"total_size": -5, "total_file_count": 1}, ("ok", "")),
    ([{**SNAPSHOT, "summary": {**SUMMARY, "total_bytes_processed": "1e400"}}], None, ("unreachable", "summary")),
    ([{**SNAPSHOT, "summary": {**SUMMARY, "total_bytes_processed": 2**63}}], None, ("unreachable", "summary")),
    ([{**SNAPSHOT, "id": ["a", "b"]}], None, ("unreachable", "wrong type")),
    ([{**SNAPSHOT, "tags": [["nested"]]}], None, ("unreachable", "wrong type")),
], ids=["total_size -5", "total_bytes 1e400", "total_bytes 2^63", "a list as id", "nested tags"])
def test_restic_output_out_of_range_is_a_reason_or_an_unknown_size(tmp_path, job_context, clock, snapshots, stats,
                                                                      expected, monkeypatch, request, fault_report):
    monkeypatch.setenv("VIGIL_TEST_RESTIC", PASSWORD)
    text = json.dumps(snapshots).replace('"1e400"', "1e400")  # a number no float holds
    binary = fake_tool(tmp_path, "restic", {"snapshots": text, "stats": stats or {}})
    config = BackupJobConfig.model_validate({
        "name": "hostile", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
        "primary": {"kind": "restic", "repository": str(tmp_path / "repo"), "password": "${env:VIGIL_TEST_RESTIC}",
                    "binary": binary}})
    clock.set("2026-11-20 06:00")
    for _ in range(2):  # the second evaluation reads back what the first recorded
        result = run(BackupEvaluation(config, job_context))
    status_now, detail = status(result), result.verdict.detail
    size = metrics(result).get(("vigil_backup_size_bytes", (("location", "primary"),)))
    fault_report(fault=f"restic JSON with {request.node.callspec.id}", expected="unexpected output, or the size "
                 "unknown", observed=f"{status_now}: {detail.partition('restic ')[2] or f'size {size}'}"[:70])
    assert status_now == expected[0] and expected[1] in detail and size is None
    if status_now == "unreachable":
        assert detail.startswith("primary: restic snapshots: unexpected JSON")
    sizes = job_context.db.query("SELECT size_bytes FROM backup_observations WHERE job = 'hostile'")
    assert all(size is None or 0 <= size < 2**63 for (size,) in sizes)


@pytest.mark.parametrize("duration", ["NaN", "-1", "1e400"])
def test_a_borg_duration_out_of_range_leaves_the_size_unknown(tmp_path, job_context, clock, duration, caplog,
                                                              fault_report):
    archive = {"id": "b" * 64, "name": "fileserver-1", "time": "2026-11-20T01:10:00.000000"}
    info = ('{"archives": [{"end": "2026-11-20T01:10:00.000000", "duration": DURATION, '
            '"stats": {"original_size": 5000, "nfiles": 3}}]}').replace("DURATION", duration)
    binary = fake_tool(tmp_path, "borg", {"list": {"archives": [archive]}, "info": info})
    config = BackupJobConfig.model_validate({
        "name": "hostile", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h",
        "primary": {"kind": "borg", "repository": str(tmp_path / "repo"), "binary": binary}})
    clock.set("2026-11-20 06:00")
    result = run(BackupEvaluation(config, job_context))
    (warning,) = [r.getMessage() for r in caplog.records if "backup size unknown" in r.getMessage()]
    fault_report(fault=f"borg info duration {duration}", expected="the size unknown, the cause logged",
                 observed=f"{status(result)}; logged {warning.partition('error=')[2]}"[:70])
    assert status(result) == "ok" and "borg info: unexpected JSON" in warning
    assert ("vigil_backup_duration_seconds", (("location", "primary"),)) not in metrics(result)


def test_a_hung_location_is_not_called_again_while_its_call_runs(tmp_path, job_context, clock):
    """Two evaluations of a host that never answers: one connection, the second waits on the first."""
    with socket.socket() as silent:  # the test counts the connections it receives
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        text = sftp_job(tmp_path, silent.getsockname()[1], timeout="20s")
        config = BackupJobConfig.model_validate(yaml.safe_load(text)["backups"][0] | {"timeout": "2s"})
        evaluation = BackupEvaluation(config, job_context)
        details = [run(evaluation).verdict.detail for _ in range(2)]
        silent.settimeout(0.5)
        connections = [silent.accept()[0]]
        with pytest.raises(TimeoutError):
            connections.append(silent.accept()[0])
        for connection in connections:
            connection.close()
    assert all("primary: listing sftp://" in detail for detail in details), details
    evaluation.close()
