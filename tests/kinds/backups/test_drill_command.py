"""`vigil drill JOB`: a restore drill run by hand, what it prints and how it exits; `vigil once` leaves drills out."""

from __future__ import annotations

from agent.cli import main
from agent.statedb import StateDB
from tests.dumps import sha256, write
from tests.test_cli import BACKUPS

CONFIG = BACKUPS.replace("verify: {every: 7d}", "drill: {every: 30d, files: 3, max_bytes: 1MiB}")


def dumps_with_sidecars(tmp_path, count: int = 4):
    dumps = tmp_path / "dumps"
    for n in range(count):
        data = f"dump {n}".encode() * (n + 1)
        write(dumps / f"db-{n}", data, age=(count - n) * 86400)
        (dumps / f"db-{n}.sha256").write_text(f"{sha256(data)}  db-{n}\n")
    return dumps


def test_a_drill_prints_each_file_and_its_reference_then_the_totals(write_config, tmp_path, capsys):
    dumps = dumps_with_sidecars(tmp_path)
    config = str(write_config(CONFIG.replace("DUMPS", str(dumps))))
    assert main(["drill", "dumps", "-c", config, "--dry-run"]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert plan[:2] == ["NEWEST           primary db-3 (24 B)", "LARGEST          primary db-2 (18 B)"]
    assert plan[-1].startswith("PLAN             primary: 3 files, 54 B from db-3, 75% of the ring passed after it")
    db = StateDB(tmp_path / "state")
    assert db.query("SELECT count(*) FROM backup_drills") == [(0,)], "a dry run records nothing"

    assert main(["drill", "dumps", "-c", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["MATCH            primary db-3 against sidecar",
                         "MATCH            primary db-2 against sidecar"]
    assert [line.split()[0] for line in lines[:3]] == ["MATCH"] * 3
    assert [line.split()[2] for line in lines[:3]] == [line.split()[2] for line in plan[:3]], "the plan shown"
    assert lines[3].startswith("ok               dumps primary: 3 files, 54 B read in ") and lines[3].endswith(
        ": 3 match")
    assert db.query("SELECT ok, files FROM backup_drills") == [(1, 3)]
    db.close()


def test_a_drill_that_finds_damage_exits_1_and_names_the_file(write_config, tmp_path, capsys):
    dumps = dumps_with_sidecars(tmp_path)
    config = str(write_config(CONFIG.replace("DUMPS", str(dumps))))
    write(dumps / "db-3", b"dump 3" * 3 + b"XXXXXX", age=86400)  # silent damage: the sidecar still says the old
    assert main(["drill", "dumps", "-c", config]) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH         primary db-3 against sidecar: sha256 {sha256(b'dump 3' * 3 + b'XXXXXX')[:12]}… ≠ " \
           f"sidecar {sha256(b'dump 3' * 4)[:12]}…" in out
    assert "\nFAILED           dumps primary: 3 files, " in out and out.rstrip().endswith(
        f"db-3: sha256 {sha256(b'dump 3' * 3 + b'XXXXXX')[:12]}… ≠ sidecar {sha256(b'dump 3' * 4)[:12]}…")


def test_a_drill_that_could_not_run_exits_1_and_a_job_without_drills_2(write_config, tmp_path, capsys):
    config = str(write_config(CONFIG.replace("DUMPS", str(tmp_path / "missing"))))
    assert main(["drill", "dumps", "-c", config]) == 1
    out = capsys.readouterr().out
    assert out.startswith("COULD NOT DRILL  dumps primary: 0 files, 0 B read in ")
    assert "could not drill: cannot list" in out
    assert main(["drill", "dumps", "-c", config, "--dry-run"]) == 1
    assert capsys.readouterr().out.startswith("COULD NOT DRILL  primary: cannot list")

    assert main(["drill", "nothing", "-c", config]) == 2
    assert "`nothing` is not a backup job in" in capsys.readouterr().err
    assert main(["drill", "dumps", "-c", config, "--location", "offsite"]) == 2
    assert "`dumps` drills `primary`, not offsite" in capsys.readouterr().err


def test_vigil_once_leaves_the_drills_out(write_config, tmp_path, capsys):
    dumps = dumps_with_sidecars(tmp_path)
    config = str(write_config(CONFIG.replace("DUMPS", str(dumps))))
    main(["once", "-c", config])
    out = capsys.readouterr().out
    assert [line.split()[1:3] for line in out.splitlines() if line.startswith("ok ")] == [["dumps", "(backup)"]]
    assert "(backup_drill)" not in out
    db = StateDB(tmp_path / "state")
    assert db.query("SELECT count(*) FROM backup_drills") == [(0,)]
    db.close()


def test_the_agent_drills_in_the_window_and_exports_the_result(start_agent, write_config, tmp_path):
    from tests.lab.harness import wait_until

    dumps = dumps_with_sidecars(tmp_path)
    drilled_each_minute = (CONFIG.replace("DUMPS", str(dumps))
                           .replace('"0 1 * * *"', '"0 1 1 1 *"\n    interval: 2s')  # no backup starts meanwhile
                           .replace("drill: {every: 30d,", 'drill: {schedule: "* * * * *", every: 1d,'))
    config = write_config("listen: 127.0.0.1:{port}\n" + drilled_each_minute)
    agent = start_agent(config)
    wait_until(lambda: 'vigil_backup_drill_ok{backup="dumps",location="primary"} 1' in agent.metrics(), 30,
               "a drill, then an evaluation that reads it")
    metrics = agent.metrics()
    assert 'vigil_backup_drill_files{backup="dumps",location="primary",result="match"} 3' in metrics
    assert 'vigil_up{backup="dumps",kind="backup_drill"} 1' in metrics
    assert "Restore drills" in agent.get("/")[1].decode()
    agent.peer.stop()


def test_a_dump_over_max_bytes_is_named_as_never_drilled_and_never_read(write_config, tmp_path, capsys):
    dumps = dumps_with_sidecars(tmp_path)
    write(dumps / "db-huge", b"h" * (2 << 20), age=3600)  # the newest, and over the 1 MiB budget
    config = str(write_config(CONFIG.replace("DUMPS", str(dumps))))
    assert main(["drill", "dumps", "-c", config, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "\nOVERSIZED        primary db-huge (2.0 MiB): over max_bytes (1.0 MiB): never drilled, the largest of 1 " \
           "such file(s)\n" in out
    assert out.rstrip().endswith("; 1 file(s) over max_bytes (1.0 MiB) are never drilled, the largest db-huge "
                                 "(2.0 MiB)")
    assert main(["drill", "dumps", "-c", config]) == 0
    db = StateDB(tmp_path / "state")
    assert db.query("SELECT path, why, result FROM backup_drill_files WHERE result = 'skipped'") == [
        ("db-huge", "largest", "skipped")]
    assert db.query("SELECT files, bytes_read FROM backup_drills") == [(3, 54)]
    db.close()


def test_check_config_refuses_a_drill_of_veeam_and_says_whose_drills_those_are(write_config, tmp_path, capsys,
                                                                              monkeypatch):
    """VBR's REST API exposes no SureBackup session: vigil cannot vouch for a Veeam restore, and says so."""
    monkeypatch.setenv("VBR_PW", "not-used")
    config = write_config(f"""
state_dir: {tmp_path / "state"}
backups:
  - name: vms
    schedule: "0 22 * * *"
    deadline: 6h
    primary: {{kind: veeam, url: "https://vbr.example.org:9419", user: u, password: "${{env:VBR_PW}}", job: vms}}
    drill: {{files: 5}}
""")
    assert main(["check-config", "-c", str(config)]) == 2
    said = capsys.readouterr().err
    assert "drill: is not available for veeam locations (primary): Veeam's restore tests are SureBackup's" in said
    assert "vigil.yaml:4: backups[0]" in said, said
