"""check-config looks at every file the config names, as it does for `${file:}` secrets: a key,
known_hosts, CA or certificate file that is not there is an error (the first poll would fail);
a backup folder or local repository that is not there yet is a warning (a backup may create it,
a mount may be down); a file this user cannot see is a warning (the agent's own user may)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from agent.config import ConfigError, load_config
from tests.conftest import ROOT, vigil_argv

SSH = {"host": "nas", "user": "vigil"}


def every_file_field(missing: Path, present: Path) -> dict:
    """A target of every kind that names a file, and a job of every location kind that does, each
    naming `missing` where the field under test is and `present` elsewhere."""
    pem = str(present)
    return {
        "targets": [
            {"name": "ssh-key", "kind": "ssh", **SSH, "key_file": str(missing / "id_ed25519"), "known_hosts": pem},
            {"name": "ssh-hosts", "kind": "ssh", **SSH, "key_file": pem, "known_hosts": str(missing / "known_hosts")},
            {"name": "nut", "kind": "nut", "host": "ups", "ups": "rack1", "ca_file": str(missing / "nut-ca.pem")},
            {"name": "vcenter", "kind": "vmware", "host": "vc", "user": "u", "password": "${env:T_PW}",
             "ca_file": str(missing / "vc-ca.pem")},
            {"name": "meraki", "kind": "meraki", "api_key": "${env:T_PW}", "ca_file": str(missing / "meraki-ca.pem")},
            {"name": "m365-ca", "kind": "m365", "tenant_id": "contoso.onmicrosoft.com",
             "client_id": "00000000-0000-0000-0000-000000000000", "client_secret": "${env:T_PW}",
             "ca_file": str(missing / "graph-ca.pem")},
            {"name": "m365-cert", "kind": "m365", "tenant_id": "contoso.onmicrosoft.com",
             "client_id": "00000000-0000-0000-0000-000000000000",
             "client_certificate": {"cert_file": str(missing / "m365.pem"), "key_file": "${env:T_KEY_PATH}"}},
            {"name": "smtp", "kind": "tcp", "host": "mail", "port": 25, "starttls": "smtp",
             "ca_file": str(missing / "smtp-ca.pem")},
            {"name": "postgres", "kind": "postgres", "host": "db", "user": "vigil", "password": "${env:T_PW}",
             "ca_file": str(missing / "pg-ca.pem")},
            {"name": "mysql", "kind": "mysql", "host": "db", "user": "vigil", "password": "${env:T_PW}",
             "ca_file": str(missing / "mysql-ca.pem")},
        ],
        "backups": [job(name, location) for name, location in {
            "sftp": {"kind": "sftp", **SSH, "path": "/srv", "key_file": str(missing / "sftp-key"), "known_hosts": pem},
            "restic-ca": {"kind": "restic", "repository": "rest:https://backup:8000/", "password": "${env:T_PW}",
                          "ca_file": str(missing / "rest-ca.pem")},
            "restic-sftp": {"kind": "restic", "repository": "sftp:vigil@nas:/srv/restic", "password": "${env:T_PW}",
                            "key_file": pem, "known_hosts": str(missing / "restic-known_hosts")},
            "restic-binary": {"kind": "restic", "repository": "s3:https://s3.example.org/b", "password": "${env:T_PW}",
                              "binary": str(missing / "restic")},
            "borg": {"kind": "borg", "repository": "ssh://vigil@nas/./repo", "key_file": str(missing / "borg-key"),
                     "known_hosts": pem},
            "s3": {"kind": "s3", "bucket": "b", "ca_file": str(missing / "s3-ca.pem")},
            "azure": {"kind": "azure_blob", "account_url": "https://a.blob.core.windows.net", "container": "c",
                      "credential": "${env:T_PW}", "ca_file": str(missing / "azure-ca.pem")},
            "veeam": {"kind": "veeam", "url": "https://vbr:9419", "user": "u", "password": "${env:T_PW}", "job": "j",
                      "ca_file": str(missing / "veeam-ca.pem")},
        }.items()],
    }


def job(name: str, primary: dict) -> dict:
    return {"name": name, "schedule": "0 1 * * *", "deadline": "4h", "primary": primary}


ERRORS = {  # field path: what the message says after the path, then the fix it gives
    "targets[0].key_file": ("id_ed25519 does not exist", "ssh-keygen"),
    "targets[1].known_hosts": ("known_hosts does not exist", "ssh-keyscan"),
    "targets[2].ca_file": ("nut-ca.pem does not exist", "CA"),
    "targets[3].ca_file": ("vc-ca.pem does not exist", "CA"),
    "targets[4].ca_file": ("meraki-ca.pem does not exist", "CA"),
    "targets[5].ca_file": ("graph-ca.pem does not exist", "CA"),
    "targets[6].client_certificate.cert_file": ("m365.pem does not exist", "certificate"),
    "targets[6].client_certificate.key_file": ("the file this secret names does not exist", "PEM"),
    "targets[7].ca_file": ("smtp-ca.pem does not exist", "CA"),
    "targets[8].ca_file": ("pg-ca.pem does not exist", "CA"),
    "targets[9].ca_file": ("mysql-ca.pem does not exist", "CA"),
    "backups[0].primary.key_file": ("sftp-key does not exist", "ssh-keygen"),
    "backups[1].primary.ca_file": ("rest-ca.pem does not exist", "CA"),
    "backups[2].primary.known_hosts": ("restic-known_hosts does not exist", "ssh-keyscan"),
    "backups[3].primary.binary": ("restic does not exist", "install"),
    "backups[4].primary.key_file": ("borg-key does not exist", "ssh-keygen"),
    "backups[5].primary.ca_file": ("s3-ca.pem does not exist", "CA"),
    "backups[6].primary.ca_file": ("azure-ca.pem does not exist", "CA"),
    "backups[7].primary.ca_file": ("veeam-ca.pem does not exist", "CA"),
}


def test_every_file_the_config_names_that_does_not_exist_is_an_error_with_its_line_and_fix(tmp_path, write_config,
                                                                                            monkeypatch):
    present = tmp_path / "present.pem"
    present.write_text("x")
    monkeypatch.setenv("T_PW", "a-password")
    monkeypatch.setenv("T_KEY_PATH", str(tmp_path / "gone" / "m365.key"))
    text = yaml.safe_dump(every_file_field(tmp_path / "gone", present), sort_keys=False)
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    issues = {issue.path: issue for issue in caught.value.issues}
    assert set(issues) == set(ERRORS), sorted(issues)
    lines = text.splitlines()
    for where, (says, fix) in ERRORS.items():
        issue = issues[where]
        key = where.rsplit(".", 1)[1]
        assert lines[issue.line - 1].lstrip(" -").startswith(f"{key}:"), (where, issue.line)
        assert says in issue.message and fix in issue.message.partition(";")[2], str(issue)
    assert str(tmp_path / "gone" / "m365.key") not in str(caught.value)  # a secret's value is never printed
    done = subprocess.run(vigil_argv("check-config", "-c", str(path)), cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "T_PW": "a-password", "T_KEY_PATH": str(tmp_path / "gone" / "k")})
    assert done.returncode == 2 and f"has {len(ERRORS)} problems" in done.stderr, done.stderr


def test_a_folder_or_local_repository_not_there_yet_is_a_warning(tmp_path, write_config, monkeypatch):
    monkeypatch.setenv("T_PW", "a-password")
    gone, key = tmp_path / "gone", tmp_path / "key"
    key.write_text("key")
    key.chmod(0o600)
    config = {"backups": [job("dumps", {"kind": "files", "path": str(gone / "dumps")}),
                          job("restic", {"kind": "restic", "repository": str(gone / "restic"),
                                         "password": "${env:T_PW}"}),
                          job("restic-local", {"kind": "restic", "repository": f"local:{gone}/restic2",
                                               "password": "${env:T_PW}"}),
                          job("borg", {"kind": "borg", "repository": str(gone / "borg")}),
                          job("no-tool", {"kind": "borg", "repository": "ssh://vigil@nas/./r", "key_file": str(key),
                                          "known_hosts": __file__, "binary": "borg-not-installed"})]}
    loaded = load_config(write_config(yaml.safe_dump(config, sort_keys=False)))
    warnings = {warning.path: warning.message for warning in loaded.warnings}
    assert set(warnings) == {"backups[0].primary.path", "backups[1].primary.repository",
                             "backups[2].primary.repository", "backups[3].primary.repository",
                             "backups[4].primary.binary"}, warnings
    assert warnings["backups[0].primary.path"].startswith(f"{gone}/dumps does not exist (yet):"), warnings
    assert "unreachable" in warnings["backups[1].primary.repository"]
    assert "borg-not-installed is not on this PATH" in warnings["backups[4].primary.binary"]


def test_a_path_that_is_not_what_the_field_needs_is_an_error(tmp_path, write_config):
    """A folder for a file, a file for a folder, and a device for a file (read, it never ends)."""
    config = {"targets": [{"name": "s", "kind": "ssh", **SSH, "key_file": str(tmp_path), "known_hosts": "/dev/zero"}],
              "backups": [job("dumps", {"kind": "files", "path": __file__})]}
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(yaml.safe_dump(config, sort_keys=False)))
    messages = {issue.path: issue.message for issue in caught.value.issues}
    assert messages["targets[0].key_file"].startswith(f"{tmp_path} is a directory, not a file"), messages
    assert messages["targets[0].known_hosts"] == "/dev/zero is not a regular file (a character device)", messages
    assert messages["backups[0].primary.path"].startswith(f"{__file__} is a file, not a directory"), messages


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to act as another user")
def test_a_file_only_the_agent_s_user_can_read_is_a_warning_not_an_error():
    """check-config run by an administrator who cannot read /etc/vigil's keys: the agent's user may."""
    with tempfile.TemporaryDirectory() as folder:  # not pytest's: its folders are the owner's alone
        etc = Path(folder)
        etc.chmod(0o755)
        key = etc / "keys" / "id_ed25519"
        key.parent.mkdir()
        key.write_text("key")
        key.parent.chmod(0o700)
        config = etc / "vigil.yaml"
        config.write_text(yaml.safe_dump({"targets": [{"name": "s", "kind": "ssh", **SSH, "key_file": str(key),
                                                       "known_hosts": str(key)}]}))
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                               *vigil_argv("check-config", "-c", str(config))], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "HOME": folder})
    assert done.returncode == 0, done.stderr
    assert f"targets[0].key_file: {key} cannot be read by this user" in done.stderr, done.stderr
