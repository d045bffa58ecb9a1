"""Restore drills on the files location: real dumps, their sidecars, a real state database, time moved by hand."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checks.config import BackupJobConfig
from checks.history import BackupHistory
from checks.job import BackupDrill, BackupEvaluation, backup_jobs
from tests.clocks import FakeClock
from tests.dumps import sha256
from tests.kinds.backups.test_backup_job import metrics, run


@pytest.fixture
def job_context(context):
    """The agent's context on a clock the test moves by hand."""
    return replace(context, clock=FakeClock())


@pytest.fixture
def clock(job_context):
    return job_context.clock


@pytest.fixture
def dumps(tmp_path) -> Path:
    (tmp_path / "dumps").mkdir()
    return tmp_path / "dumps"


def at(when: str) -> float:
    return datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()


def dump(dumps: Path, name: str, data: bytes, when: str, sidecar: bool = True) -> Path:
    """A dump written at `when` (UTC), with its `.sha256` sidecar."""
    path = dumps / name
    path.write_bytes(data)
    if sidecar:
        (dumps / f"{name}.sha256").write_text(f"{sha256(data)}  {name}\n")
    os.utime(path, (at(when), at(when)))
    return path


def nightly(dumps: Path) -> None:
    """Four nights of dumps; the one of the 18th is the largest."""
    for day in (17, 18, 19, 20):
        dump(dumps, f"db-{day}.sql", bytes([day]) * (3000 if day == 18 else 1000 + day), f"2026-11-{day} 01:30")


def job(dumps: Path, offsite: Path | None = None, **drill) -> BackupJobConfig:
    def files(path: Path) -> dict:
        return {"kind": "files", "path": str(path), "pattern": "db-*"}

    return BackupJobConfig.model_validate({
        "name": "db", "schedule": "0 1 * * *", "timezone": "UTC", "deadline": "4h", "primary": files(dumps),
        **({"offsite": files(offsite)} if offsite else {}),
        "drill": {"every": "30d", "files": 4, "max_bytes": "1MiB", **drill}})


def recorded(context, name: str = "db"):
    history = BackupHistory(context.db, name)
    last = history.last_drill("primary")
    return last, history.drill_files("primary", last.started_at)


def test_a_good_drill_matches_every_dump_against_its_sidecar(dumps, job_context, clock):
    nightly(dumps)
    (spec,) = [j for j in backup_jobs(job(dumps)) if j.kind == "backup_drill"]
    assert (spec.interval, spec.timeout, spec.collector.BOARD) == (300, 2 * 3600 + 60, "Restore drills")
    clock.set("2026-11-20 06:10")
    verdict = run(spec.factory(job_context)).verdict
    assert verdict.status == "ok" and verdict.detail == "primary: 4 match; next due 2026-12-20 06:00 UTC"
    drill, files = recorded(job_context)
    assert (drill.ok, drill.files, drill.bytes_read, drill.salt) == (True, 4, 3000 + 1017 + 1019 + 1020, "db/primary")
    assert [(f.path, f.why, f.result, f.reference) for f in files[:2]] == [
        ("db-20.sql", "newest", "match", "sidecar"), ("db-18.sql", "largest", "match", "sidecar")]
    assert {f.path for f in files} == {f"db-{day}.sql" for day in (17, 18, 19, 20)}
    assert all(f.sha256 == sha256((dumps / f.path).read_bytes()) for f in files)
    assert drill.coverage == 1.0


def test_the_dry_run_plan_is_the_plan_the_drill_follows(dumps, job_context, clock):
    for n in range(12):
        dump(dumps, f"db-{n:02}.sql", b"x" * (100 + n), f"2026-11-{n + 1:02} 01:30")
    drills = BackupDrill(job(dumps), job_context)
    clock.set("2026-11-20 06:10")
    for _ in range(3):  # the rotation moves on, and each time the plan shown is the plan followed
        _, planned = drills.driller("primary").prepare()
        outcome = drills.drill(only_due=False)["primary"]
        assert [(f.path, f.why) for f in outcome.files] == [(p.candidate.path, p.why) for p in planned.picks]
        assert outcome.drill.cursor_to == planned.cursor_to and outcome.drill.ok


def test_a_dump_rewritten_with_its_sidecar_after_vigil_saw_it_fails_against_the_first_seen_checksum(
        dumps, job_context, clock):
    nightly(dumps)
    config = job(dumps)
    evaluation = BackupEvaluation(config, job_context)
    clock.set("2026-11-20 06:00")
    assert run(evaluation).verdict.status == "ok"  # vigil sees the dumps and records their checksums
    dump(dumps, "db-19.sql", b"tampered" * 100, "2026-11-19 01:30")  # a new dump, a new sidecar, the same time

    clock.set("2026-11-20 06:10")
    out = run(BackupDrill(config, job_context))
    assert out.verdict.status == "failed"
    drill, files = recorded(job_context)
    (bad,) = [f for f in files if f.result != "match"]
    assert (bad.path, bad.result, bad.reference) == ("db-19.sql", "mismatch", "first-seen")
    assert bad.detail == f"sha256 {sha256(b'tampered' * 100)[:12]}… ≠ first-seen {sha256(bytes([19]) * 1019)[:12]}…"
    assert drill.ok is False and drill.detail == f"db-19.sql: {bad.detail}"

    result = run(evaluation)
    assert result.verdict.status == "failed"
    assert f"primary: drill: db-19.sql: sha256 {sha256(b'tampered' * 100)[:12]}… ≠ first-seen" in result.verdict.detail


def test_a_dump_deleted_between_the_listing_and_its_restore_could_not_be_drilled_and_is_no_damage(
        dumps, job_context, clock):
    nightly(dumps)
    drills = BackupDrill(job(dumps), job_context)
    _, planned = drills.driller("primary").prepare()
    victim = planned.picks[2].candidate.path

    def rotate(where, file):  # a retention run removes a dump while the drill is under way
        if file.path == planned.picks[1].candidate.path:
            (dumps / victim).unlink()

    clock.set("2026-11-20 06:10")
    outcome = drills.drill(only_due=False, progress=rotate)["primary"]
    (gone,) = [f for f in outcome.files if f.path == victim]
    assert gone.result == "unreadable" and gone.detail.startswith(f"cannot read {victim} in {dumps}: ")
    assert outcome.drill.ok is True and outcome.drill.detail == "3 match, 1 unreadable"


def test_a_dump_changed_twice_during_a_drill_is_not_a_failure(dumps, job_context, clock):
    """The failure rule: a mismatch must recur on a second restore, with the backup still listed."""
    nightly(dumps)
    drills = BackupDrill(job(dumps), job_context)
    path = dumps / "db-20.sql"
    real = type(drills.drilled["primary"]).restore
    reads = []

    def restore(location, candidate, sink, cancel):  # a backup tool rewriting the newest dump as it is read
        reads.append(candidate.path)
        if candidate.path == "db-20.sql":
            path.write_bytes(os.urandom(1020))
        real(location, candidate, sink, cancel)

    drills.drilled["primary"].restore = restore.__get__(drills.drilled["primary"])
    outcome = drills.drill(only_due=False)["primary"]
    (changed,) = [f for f in outcome.files if f.path == "db-20.sql"]
    assert changed.result == "unreadable" and changed.detail.startswith("not reproduced by a second restore")
    assert reads.count("db-20.sql") == 2 and outcome.drill.ok is True


def test_a_drill_cancelled_from_another_thread_is_recorded_as_cancelled_and_leaves_no_thread(
        dumps, job_context, clock):
    nightly(dumps)
    drills = BackupDrill(job(dumps), job_context)
    first_done, closed = threading.Event(), threading.Event()

    def pause(where, file):
        first_done.set()
        closed.wait(10)

    before = set(threading.enumerate())
    outcomes = {}
    worker = threading.Thread(target=lambda: outcomes.update(drills.drill(only_due=False, progress=pause)))
    worker.start()
    assert first_done.wait(10)
    drills.close()  # what the scheduler does on a stop, a reload or a timeout
    drills.close()  # and again: idempotent
    closed.set()
    worker.join(10)
    assert not worker.is_alive() and set(threading.enumerate()) == before
    drill, files = recorded(job_context)
    assert (drill.ok, drill.detail, len(files)) == (None, "cancelled", 1)
    assert outcomes["primary"].drill == drill


def test_a_drill_waits_for_its_window_and_stops_before_the_next_backup(dumps, job_context, clock):
    nightly(dumps)
    drills = BackupDrill(job(dumps), job_context)
    clock.set("2026-11-20 03:00")  # the backup's own window: the drill waits
    assert run(drills).verdict.detail == "primary: never drilled, first due 2026-11-20 06:00 UTC"
    assert BackupHistory(job_context.db, "db").last_drill("primary") is None

    dump(dumps, "db-huge.sql", b"h" * (2 << 20), "2026-11-20 02:00")  # over max_bytes: named in the evidence only
    late = BackupDrill(job(dumps, at="00:50"), job_context)  # a window ten minutes before the backup starts
    clock.set("2026-11-21 00:52")
    with pytest.raises(Exception, match="^primary: could not finish: the backup starts at 2026-11-21 01:00 UTC$"):
        run(late)  # the run's error is logged: it names no file
    drill, files = recorded(job_context)
    assert (drill.ok, [(f.path, f.result) for f in files]) == (None, [("db-huge.sql", "skipped")])
    assert drill.detail.endswith("never drilled, the largest db-huge.sql (2.0 MiB)")


def test_the_status_goes_unverified_when_no_good_drill_came_for_two_periods(dumps, job_context, clock):
    nightly(dumps)
    config = job(dumps, every="7d")
    evaluation = BackupEvaluation(config, job_context)
    clock.set("2026-11-20 06:00")
    values = metrics(run(evaluation))
    assert values[("vigil_backup_drill_overdue", (("location", "primary"),))] == 0
    assert ("vigil_backup_drill_ok", (("location", "primary"),)) not in values, "no drill yet: no result"

    for day in range(21, 36):  # a dump every night, no drill
        when = datetime.fromtimestamp(at("2026-11-20 01:30") + (day - 20) * 86400, UTC)
        dump(dumps, f"db-{day}.sql", b"d" * 1000, when.strftime("%Y-%m-%d %H:%M"))
    clock.set("2026-12-05 06:00")
    out = run(evaluation)
    assert out.verdict.status == "unverified"
    assert out.verdict.detail == "primary: 15d since watching began, with no good drill (due every 7d)"
    assert metrics(out)[("vigil_backup_drill_overdue", (("location", "primary"),))] == 1


def test_the_drill_metrics_come_from_the_last_conclusive_drill(dumps, job_context, clock):
    nightly(dumps)
    config = job(dumps)
    clock.set("2026-11-20 06:10")
    drills = BackupDrill(config, job_context)
    drills.drill(only_due=False)
    values = metrics(run(BackupEvaluation(config, job_context)))
    primary = (("location", "primary"),)
    assert values[("vigil_backup_drill_ok", primary)] == 1
    assert values[("vigil_backup_drill_timestamp_seconds", primary)] == at("2026-11-20 06:10")
    assert values[("vigil_backup_drill_bytes", primary)] == 3000 + 1017 + 1019 + 1020
    assert values[("vigil_backup_drill_coverage_ratio", primary)] == 1.0
    assert values[("vigil_backup_drill_duration_seconds", primary)] == 0  # the fake clock stood still
    assert {labels[1][1]: value for (name, labels), value in values.items() if name == "vigil_backup_drill_files"} \
        == {"match": 4, "restored": 0, "skipped": 0, "mismatch": 0, "damaged": 0, "unreadable": 0}
    assert not any("path" in dict(labels) for _, labels in values), "never a label per file"


def test_a_restore_stops_within_a_chunk_once_cancelled(dumps, context):
    from checks.model import Candidate, DrillNotRun
    from checks.sources.filelike import CHUNK
    from checks.sources.files import FilesLocation

    dump(dumps, "db-big.sql", b"z" * (8 * CHUNK), "2026-11-20 01:30")
    location = FilesLocation(FilesLocation.Config(kind="files", path=dumps), context)
    cancel, written = threading.Event(), []

    class Stopping:  # the stop arrives while the first chunk is hashed
        def write(self, data: bytes) -> None:
            written.append(len(data))
            cancel.set()

    with pytest.raises(DrillNotRun, match="^cancelled$"):
        location.restore(Candidate("db-big.sql", "db-big.sql", 8 * CHUNK), Stopping(), cancel)
    assert written == [CHUNK]


def test_more_or_fewer_bytes_than_listed_is_damage():
    from checks.drill import Digest
    from checks.model import Candidate, DrillDamage

    listed = Candidate("snap", "/srv/a", size=10)
    digest = Digest(listed, threading.Event())
    digest.write(b"x" * 10)
    with pytest.raises(DrillDamage, match=r"^/srv/a: more bytes than listed \(10\)$"):
        digest.write(b"x")
    short = Digest(listed, threading.Event())
    short.write(b"x" * 9)
    with pytest.raises(DrillDamage, match="^/srv/a: 9 bytes restored, 10 listed$"):
        short.finish()


def test_a_drill_whose_time_ran_out_could_not_finish(dumps, context):
    from tests.clocks import RunawayClock

    nightly(dumps)
    drills = BackupDrill(job(dumps, timeout="1h"), replace(context, clock=RunawayClock()))
    outcome = drills.driller("primary").run()
    assert (outcome.drill.ok, outcome.drill.detail, outcome.files) == (
        None, "could not finish: the drill's time ran out", ())


def test_without_checksums_a_first_restore_is_the_baseline_of_later_drills_and_of_the_other_location(
        dumps, tmp_path, job_context, clock):
    import shutil

    for day in (18, 19, 20):
        dump(dumps, f"db-{day}.sql", bytes([day]) * 500, f"2026-11-{day} 01:30", sidecar=False)
    copies = tmp_path / "copies"
    shutil.copytree(dumps, copies)  # copy2: the same modification times
    drills = BackupDrill(job(dumps, copies, locations="both"), job_context)
    clock.set("2026-11-20 06:10")
    first = drills.drill(only_due=False)
    assert {f.result for f in first["primary"].files} == {"skipped"}
    assert first["primary"].drill.ok is None and first["primary"].drill.detail == "could not drill: 3 skipped"
    assert {(f.result, f.reference) for f in first["offsite"].files} == {("match", "other-location")}

    clock.advance(86400)
    (dumps / "db-19.sql").write_bytes(bytes([99]) * 500)  # silent damage: same size, same time
    os.utime(dumps / "db-19.sql", (at("2026-11-19 01:30"), at("2026-11-19 01:30")))
    again = drills.drill(only_due=False, where="primary")["primary"]
    assert {f.path: (f.result, f.reference) for f in again.files} == {
        "db-18.sql": ("match", "earlier-drill"), "db-19.sql": ("mismatch", "earlier-drill"),
        "db-20.sql": ("match", "earlier-drill")}
    assert again.drill.ok is False
