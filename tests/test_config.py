"""Config loading: clear errors with file:line and field path, secrets by reference only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import DEFAULT_PATH, EMBEDDED, ConfigError, load_config
from agent.units import format_duration, parse_duration, parse_size
from tests.conftest import ROOT, vigil_argv

SECRET = "hunter2-do-not-print"


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def check_config(path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(vigil_argv("check-config", "-c", str(path)), capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def test_a_valid_config_loads_with_defaults_applied(write_config):
    path = write_config("""
listen: 127.0.0.1:9999
state_dir: {state}
defaults: {interval: 2m, timeout: 30s}
targets:
  - name: monitor-01
    kind: host
  - name: fast
    kind: host
    interval: 10s
  - name: slow
    kind: host
    interval: 1h
    timeout: 5m
""")
    config = load_config(path).config
    monitor, fast, slow = config.targets
    assert config.listen == "127.0.0.1:9999"
    assert config.schedule(monitor) == (120, 30)
    # an inherited timeout is cut below a shorter interval rather than rejected
    assert config.schedule(fast) == (10, 8)
    assert config.schedule(slow) == (3600, 300)


@pytest.mark.parametrize("text, expected", [
    ("targets:\n  - name: a\n    kind: host\n    intervl: 30s\n",
     ":4: targets[0].intervl: unknown key `intervl`; did you mean `interval`?"),
    ("listen: 127.0.0.1:1\ndefalts: {interval: 1m}\n",
     ":2: defalts: unknown key `defalts`; did you mean `defaults`?"),
    ("targets:\n  - name: a\n    kind: host\n    interval: soon\n",
     ":4: targets[0].interval: `soon` is not a duration"),
    ("targets:\n  - name: a\n    kind: host\n    interval: [1]\n",
     ":4: targets[0].interval: expected a duration"),
    ("workers: many\n", ":1: workers: expected a whole number"),
    ("targets:\n  - name: a\n    kind: hots\n", ":3: targets[0].kind: unknown kind `hots`; did you mean `host`?"),
    ("targets:\n  - name: a\n", ":2: targets[0]: missing required key `kind`"),
    ("targets:\n  - kind: host\n", ":2: targets[0]: missing required key `name`"),
    ("listen: localhost\n", ":1: listen: expected host:port"),
    ("targets:\n  - name: a\n    kind: host\n  - name: a\n    kind: host\n",
     ":4: targets[1].name: duplicate target name `a` (also targets[0])"),
    ("targets:\n  - name: a\n    kind: host\n    interval: 10s\n    timeout: 10s\n",
     ":5: targets[0].timeout: the timeout must be shorter than the interval"),
    ("targets: {name: a}\n", ":1: targets: expected a list"),
    ("targets:\n  - name: a\n    kind: host\n    name: b\n", ":4: duplicate key `name`"),
    ("targets: [\n", ":2: while parsing a flow node"),
    ("backups:\n  - name: x\n    schedule: '0 1 * * *'\n    deadline: 4h\n    primary: {kind: restik}\n",
     ":5: backups[0].primary.kind: unknown kind `restik`; did you mean `restic`?"),
    ("backups:\n  - name: x\n    schedule: '0 25 * * *'\n    deadline: 4h\n    primary: {kind: restic}\n",
     ":3: backups[0].schedule: `0 25 * * *` is not a valid cron expression"),
    ("backups:\n  - name: x\n    schedule: '0 1 * * *'\n    timezone: Europe/Brusels\n    deadline: 4h\n",
     ":4: backups[0].timezone: unknown time zone `Europe/Brusels`; did you mean `Europe/Brussels`?"),
    ("backups:\n  - name: x\n    schedule: '0 1 * * *'\n    deadline: 4h\n"
     "    primary: {kind: restic, repository: /r, password: '${env:VIGIL_NOPE}', pasword: x}\n",
     ":5: backups[0].primary.pasword: unknown key `pasword`; did you mean `password`?"),
])
def test_errors_name_the_line_and_the_field(write_config, text, expected):
    path = write_config(text)
    assert any(expected in error and error.startswith(str(path)) for error in errors_of(path)), errors_of(path)


def test_every_problem_is_reported_at_once(write_config):
    path = write_config("targets:\n  - name: a\n    kind: host\n    intervl: 1m\n    timeout: x\n"
                        "  - name: b\n    kind: nope\n")
    lines = [error.split(":")[1] for error in errors_of(path)]
    assert sorted(lines) == ["4", "5", "7"]


def test_secrets_resolve_from_env_file_and_systemd_credentials(tmp_path, monkeypatch):
    from agent.secrets import resolve_reference

    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "ups").write_text(SECRET)
    monkeypatch.setenv("VIGIL_TEST_SECRET", SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    for reference in ("${env:VIGIL_TEST_SECRET}", f"${{file:{tmp_path}/secret}}", "${cred:ups}"):
        secret = resolve_reference(reference)
        assert secret.get_secret_value() == SECRET  # the trailing newline of the file is gone
        assert SECRET not in repr(secret) and SECRET not in str(secret)


@pytest.mark.parametrize("reference, message", [
    ("plain-text-password", "must be a secret reference"),
    ("${env:VIGIL_NOT_SET_ANYWHERE}", "environment variable VIGIL_NOT_SET_ANYWHERE is not set"),
    ("${file:/nonexistent/secret}", "secret file /nonexistent/secret does not exist"),
    ("${cred:ups}", "needs systemd's LoadCredential="),
])
def test_bad_secret_references_are_explained(reference, message, monkeypatch):
    from agent.secrets import resolve_reference

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ValueError, match=message.replace("$", r"\$")):
        resolve_reference(reference)


@pytest.mark.parametrize("case, text", [
    ("typo", "targets:\n  - name: a\n    kind: host\n    intervl: 30s\n"),
    ("wrong type", "targets:\n  - name: a\n    kind: host\n    interval: true\n"),
    ("missing secret file", "targets:\n  - name: a\n    kind: secretive\n    password: ${file:MISSING}\n"),
])
def test_check_config_exits_2_with_the_line_and_never_prints_a_secret(tmp_path, capsys, test_kinds,
                                                                     monkeypatch, case, text):
    from agent.cli import main

    monkeypatch.setenv("VIGIL_TEST_SECRET", SECRET)
    config = tmp_path / "vigil.yaml"
    config.write_text(f"# {SECRET} is only a comment\n" + text.replace("MISSING", str(tmp_path / "absent")))
    assert main(["check-config", "-c", str(config)]) == 2
    out = capsys.readouterr()
    first = out.err.splitlines()[0]
    assert first.startswith(f"{config}:5: targets[0]."), first
    assert SECRET not in out.out + out.err
    assert "Traceback" not in out.err


def test_an_inline_secret_is_refused_without_repeating_it(tmp_path, capsys, test_kinds):
    from agent.cli import main

    config = tmp_path / "vigil.yaml"
    config.write_text(f"targets:\n  - name: a\n    kind: secretive\n    password: {SECRET}\n")
    assert main(["check-config", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert ":4: targets[0].password: must be a secret reference" in err
    assert SECRET not in err


def test_a_resolved_secret_never_shows_in_the_model(monkeypatch, test_kinds, write_config):
    monkeypatch.setenv("VIGIL_TEST_SECRET", SECRET)
    path = write_config("targets:\n  - name: a\n    kind: secretive\n    password: ${env:VIGIL_TEST_SECRET}\n")
    target = load_config(path).config.targets[0]
    assert target.password.get_secret_value() == SECRET
    assert SECRET not in repr(target) and SECRET not in target.model_dump_json()


def test_check_config_accepts_a_good_file(write_config):
    done = check_config(write_config("targets:\n  - {name: a, kind: host}\n"))
    assert done.returncode == 0 and "OK, 1 target, 0 backup jobs" in done.stdout


def test_without_a_file_the_embedded_default_monitors_this_host():
    if DEFAULT_PATH.exists():
        pytest.skip(f"{DEFAULT_PATH} exists on this machine")
    loaded = load_config(None)
    assert loaded.source == EMBEDDED
    assert loaded.config.listen == "127.0.0.1:9839"
    assert [t.kind for t in loaded.config.targets] == ["host"]


def test_an_explicit_missing_file_is_an_error_not_the_default(tmp_path):
    assert "cannot read the file" in errors_of(tmp_path / "absent.yaml")[0]


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400),
                                           ("1h30m", 5400), ("250ms", 0.25), (90, 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, size", [("512MiB", 512 * 2**20), ("10GiB", 10 * 2**30), ("1.5TB", 1.5e12),
                                        ("100", 100), ("2kB", 2000)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["5 minutes", "m5", "", "1x"])
def test_bad_durations_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_durations_print_as_written():
    assert [format_duration(s) for s in (90, 3600, 0.5, 86400 + 60)] == ["1m30s", "1h", "500ms", "1d1m"]


def check(tmp_path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "vigil.yaml"
    path.write_text(text)
    code = main(["check-config", "-c", str(path)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_every_problem_is_reported_in_one_pass(tmp_path, capsys):
    code, out = check(tmp_path, """\
backups:
  - {name: x, schedule: "0 1 * * *", deadline: 4h, primary: {kind: files, path: /srv, pattern: "*"}}
  - {name: x, schedule: "0 1 * * *", deadline: 4h, primary: {kind: files, path: relative, pattern: "*"}}
""", capsys)
    assert code == 2
    assert "vigil.yaml:3: backups[1].name: duplicate backup job name `x` (also backups[0])" in out
    assert "vigil.yaml:3: backups[1].primary.path: must be an absolute path" in out
    assert "the configuration has 2 problems" in out


@pytest.mark.parametrize("text, expected", [
    ("targets:\n\t- {name: a, kind: host}\n", "vigil.yaml:2: a tab character: YAML indents with spaces only"),
    ('targets:\n  - name: "a\n    kind: host\n  - name: b\n',
     "vigil.yaml:2: this quoted value is never closed (a missing quote)"),
    ("workers: many\n", "vigil.yaml:1: workers: expected a whole number"),
    ("targets:\n  - {name: a, kind: host, interval: 0}\n", "targets[0].interval: must be greater than 0"),
    ("targets:\n  - {name: 'a b', kind: host}\n", "targets[0].name: a name is letters, digits and"),
    ('backups:\n  - {name: x, schedule: "@nightly", deadline: 4h, primary: {kind: files, path: /srv}}\n',
     "valid shorthands: @yearly"),
])
def test_messages_say_what_a_person_needs(tmp_path, capsys, text, expected):
    code, out = check(tmp_path, text, capsys)
    assert code == 2 and expected in out, out
    assert "Input should be" not in out and "unable to parse" not in out


def test_legal_but_surely_wrong_settings_are_warned_about(tmp_path, capsys):
    code, out = check(tmp_path, """\
listen: 0.0.0.0:9839
backups:
  - name: x
    schedule: "@daily"
    deadline: 25h
    max_lag: 2h
    primary: {kind: files, path: /srv, pattern: "*"}
    verify: {every: 7d, read_data_subset: 150%}
""", capsys)
    assert code == 0
    assert "vigil.yaml:1: warning: listen: listening on 0.0.0.0:9839 without web_config" in out
    assert "vigil.yaml:5: warning: backups[0].deadline: the deadline (1d1h) is longer than the time between" in out
    assert "vigil.yaml:6: warning: backups[0].max_lag: max_lag is set but the job has no offsite" in out
    assert "vigil.yaml:8: warning: backups[0].verify.read_data_subset: `150%` is more than all" in out
    assert "4 warnings" in out
    code, out = check(tmp_path, "# to be written\n", capsys)
    assert code == 0 and "the file is empty: vigil watches nothing" in out


def test_a_backup_job_s_inherited_timeout_fits_a_short_interval(tmp_path):
    from checks.config import BackupJobConfig

    base = {"name": "x", "schedule": "@daily", "deadline": "4h", "primary": {"kind": "files", "path": "/srv"}}
    assert BackupJobConfig.model_validate({**base, "interval": "1m"}).timeout == 48
    assert BackupJobConfig.model_validate(base).timeout == 120
    assert BackupJobConfig.model_validate(base).schedule == "0 0 * * *"
    with pytest.raises(ValueError, match="the timeout must be shorter than the interval"):
        BackupJobConfig.model_validate({**base, "interval": "1m", "timeout": "2m"})



def test_the_service_accounts_commands_use_the_services_state_directory(tmp_path, monkeypatch):
    """`sudo -u vigil vigil drill JOB` records where the service reads, not in the account's XDG home; another
    user, who may not write there, keeps a state of their own."""
    import agent.config as config
    service = tmp_path / "var-lib-vigil"
    monkeypatch.setattr(config, "SYSTEM_STATE", service)
    monkeypatch.setattr(config.os, "geteuid", lambda: 999)  # not root; os.access below is the real one
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert config.default_state_dir() == tmp_path / "xdg" / "vigil"  # no service here: the user's own
    service.mkdir()
    assert config.default_state_dir() == service  # writable (the test runs as root or as its owner)
