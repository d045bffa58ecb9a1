"""Files that hold what vigil knows or reads stay private: the state it creates is its user's alone whatever
the umask, a secret or key file others can read, or reached through a link, is warned of as ssh would, and
a file given as the config that is not one is never shown."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import wait_until
from tests.test_lifecycle import metric


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_the_state_dir_and_database_are_private_whatever_the_umask(start_agent, write_config, tmp_path,
                                                                   fault_report):
    """Outside systemd (whose unit sets UMask=0077) the state dir was 0755 and vigil.db/-wal/-shm 0644."""
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                          "  - {name: ticking, kind: counting, interval: 300ms}\n")
    umask = os.umask(0o002)  # the agent inherits it: a group-writable default
    try:
        agent = start_agent(config, test_kinds=True)
    finally:
        os.umask(umask)
    wait_until(lambda: metric(agent.metrics(), "vigil_last_success_timestamp_seconds", "ticking"), 10,
               "a success written to the state database")
    state = tmp_path / "state"
    wait_until(lambda: (state / "vigil.db-wal").exists() and (state / "vigil.db-shm").exists(), 10, "the WAL")
    modes = {path.name: mode(path) for path in (state, *state.glob("vigil.db*"))}
    assert modes == {"state": "0o700", "vigil.db": "0o600", "vigil.db-wal": "0o600", "vigil.db-shm": "0o600"}, modes
    fault_report(fault="umask 0002, no systemd", expected="state dir 0700, vigil.db and its WAL 0600",
                 observed=", ".join(f"{name} {value[2:]}" for name, value in modes.items()))


def test_a_secret_or_key_file_open_to_others_or_behind_a_link_is_warned_of_by_check_config_and_at_start(
        start_agent, write_config, tmp_path, fault_report):
    """ssh refuses a private key that others can read; vigil read such secret files without a word, and
    followed a link whoever controls it could point at another file (sent as the secret). A file that root
    owns and shares with a group (root:vigil 0640, how the service account is given it) is no exposure."""
    files = {}
    for name, permissions in (("open", 0o644), ("group", 0o640), ("private", 0o600), ("key", 0o644),
                              ("shared", 0o640)):
        files[name] = tmp_path / name
        files[name].write_text(f"{name}-secret-value\n")
        files[name].chmod(permissions)
    os.chown(files["group"], 65534, 65534)  # a user's own file, open to its group: whoever else is in it
    os.chown(files["shared"], 0, 65534)  # root's, shared with the agent's group: how a service is given a secret
    files["link"] = tmp_path / "link"
    files["link"].symlink_to(files["private"])
    meraki = "  - {{name: {0}, kind: meraki, api_key: '${{file:{1}}}', base_url: 'https://127.0.0.1:1/api/v1'}}\n"
    names = ("open", "group", "private", "link", "shared")
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                          + "".join(meraki.format(name, files[name]) for name in names)
                          + f"  - {{name: ssh, kind: ssh, host: 127.0.0.1, port: 1, user: u, key_file: {files['key']}, "
                            f"known_hosts: {files['open']}}}\n")
    fix = "make it the agent's alone (chmod 600, or owned by root with the agent's group and mode 0640), as ssh " \
          "asks of a private key"
    expected = [
        f"{config}:4: warning: targets[0].api_key: secret file {files['open']} is open to everyone on this host "
        f"(mode 0644): {fix}",
        f"{config}:5: warning: targets[1].api_key: secret file {files['group']} is open to its group "
        f"(mode 0640): {fix}",
        f"{config}:7: warning: targets[3].api_key: secret file {files['link']} is a symbolic link to "
        f"{files['private']}: whoever can change the link chooses the file sent as the secret; name the file itself",
        f"{config}:9: warning: targets[5].key_file: {files['key']} is open to everyone on this host (mode 0644): "
        f"{fix}",
    ]
    done = subprocess.run(vigil_argv("check-config", "-c", str(config)), cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(line for line in done.stderr.splitlines() if "warning:" in line) == expected, done.stderr
    agent = start_agent(config)
    logged = [line for line in agent.peer.output().splitlines() if "warning: targets[" in line]
    assert sorted(line[line.index(str(config)):] for line in logged) == expected, logged
    fault_report(fault="secret and key files mode 0644/0640, a secret behind a symlink",
                 expected="a warning each, by check-config and at start", observed=f"{len(logged)} warnings")


SHADOW = "root:$y$j9T$abcdefgh$ijklmnop:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"  # each line a YAML key


def test_check_config_pointed_at_a_file_that_is_not_a_config_never_shows_its_content(tmp_path, write_config,
                                                                                      fault_report):
    """`check-config -c` at a link to /etc/shadow printed every line as "unknown key `root:$y$...`"; so did a
    web_config naming it."""
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW)
    link = tmp_path / "vigil.yaml"
    link.symlink_to(shadow)
    web = write_config("web_config: " + str(link) + "\n", name="web.yaml")
    said = {}
    for config, keys in ((link, "listen, state_dir, web_config, workers, backup_workers, defaults, targets, backups"),
                         (web, "tls_server_config, http_server_config, basic_auth_users")):
        done = subprocess.run(vigil_argv("check-config", "-c", str(config)), cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "$y$" not in done.stdout + done.stderr and "daemon" not in done.stdout + done.stderr, done.stderr
        said[config] = done.stderr.splitlines()[0]
        assert said[config] == (f"{link}: none of its 2 top-level keys is one this file takes ({keys}), so its "
                                f"content is not shown; it is a symbolic link to {shadow}: is it the file meant?")
    fault_report(fault="check-config -c a link to a shadow-like file", expected="the file described, no line shown",
                 observed=said[link].split(": ", 1)[1].replace(f"{tmp_path}/", ""))
