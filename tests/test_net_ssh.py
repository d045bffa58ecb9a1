"""The SSH transport against a real OpenSSH sshd (tests/lab/sshd.py): host keys, client keys, commands, jumps."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from agent.net.ssh import AuthRefused, HostKeyChanged, HostKeyUnknown, SshEndpoint, SshError, SshFields, connect, run
from tests.lab.blackhole import unaccepted
from tests.lab.harness import free_port, need
from tests.lab.sshd import Sshd, fingerprint, known_hosts_line, make_key, sshd


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Sshd:
    with sshd(tmp_path_factory.mktemp("sshd")) as running:
        yield running


def endpoint(server: Sshd, **changes) -> SshEndpoint:
    fields = {"host": server.host, "port": server.port, "user": server.user, "key_file": server.key_file,
              "key_passphrase": None, "password": None, "known_hosts": server.known_hosts,
              "host_key_fingerprint": None, "timeout": 10.0, **changes}
    return SshEndpoint(**fields)


def authorize(server: Sshd, key: Path) -> Path:
    with (server.key_file.parent / "authorized_keys").open("a") as keys:
        keys.write(Path(f"{key}.pub").read_text())
    return key


def new_key(path: Path, kind: str = "ed25519", passphrase: str = "", pem: bool = False) -> Path:
    keygen = need("ssh-keygen", "apt-get install openssh-client")
    subprocess.run([keygen, "-q", "-t", kind, "-N", passphrase, "-C", "vigil-test", "-f", str(path),
                    *(["-m", "PEM"] if pem else [])], check=True, capture_output=True)
    return path


@pytest.fixture
def client(server):
    connected = connect(endpoint(server))
    yield connected
    connected.close()


def test_a_command_gives_its_status_and_both_outputs(client):
    assert run(client, "echo out; echo err >&2; exit 3", timeout=10) == (3, b"out\n", b"err\n")


def test_stdin_is_fed_and_closed(client):
    assert run(client, "wc -c", timeout=10, stdin=b"x" * 100_000) == (0, b"100000\n", b"")


def test_a_large_output_within_the_cap_is_read_whole(client):
    status, out, _ = run(client, "head -c 3000000 /dev/zero", timeout=10)
    assert (status, len(out)) == (0, 3_000_000)


def test_the_whole_command_is_bounded_and_its_channel_closed(client):
    """A command that keeps writing a little never trips a per-read timeout; the whole has 1 s."""
    started = time.monotonic()
    with pytest.raises(SshError, match=r"^ssh .+@127\.0\.0\.1:\d+: `while true; do echo tick; sleep 0\.2; done` "
                                       r"did not finish within 1s; stopped it$"):
        run(client, "while true; do echo tick; sleep 0.2; done", timeout=1)
    print(f"stopped after {time.monotonic() - started:.2f}s")
    transport = client.get_transport()
    assert transport.is_active()
    assert run(client, "echo still usable", timeout=10)[1] == b"still usable\n"


def test_output_over_the_cap_stops_the_command(client):
    with pytest.raises(SshError, match=r"`cat /dev/zero` wrote more than 1000000 bytes; stopped it$"):
        run(client, "cat /dev/zero", timeout=30, max_bytes=1_000_000)
    assert run(client, "true", timeout=10)[0] == 0


def test_a_pinned_fingerprint_is_accepted(server):
    pinned = connect(endpoint(server, known_hosts=None, host_key_fingerprint=server.fingerprint))
    try:
        assert run(pinned, "echo ok", timeout=10)[1] == b"ok\n"
    finally:
        pinned.close()


def test_another_pinned_fingerprint_is_refused(server, tmp_path):
    wrong = fingerprint(make_key(tmp_path / "other"))
    with pytest.raises(HostKeyUnknown, match=re.escape(f"key is {server.fingerprint}, not the pinned {wrong}")):
        connect(endpoint(server, known_hosts=None, host_key_fingerprint=wrong))


def test_an_unknown_host_key_is_refused_and_nothing_is_added(server, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(server.port, make_key(tmp_path / "k")).replace("127.0.0.1", "192.0.2.1"))

    with pytest.raises(HostKeyUnknown, match=re.escape(
            f"ssh {server.user}@127.0.0.1:{server.port}: the server's ssh-ed25519 key ({server.fingerprint}) "
            f"is not in {known_hosts}; check it and add it (ssh-keyscan)")):
        connect(endpoint(server, known_hosts=known_hosts))
    assert known_hosts.read_text().count("\n") == 1


def test_a_changed_host_key_is_refused_with_both_fingerprints(server, tmp_path):
    impostor = make_key(tmp_path / "old_host_key")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(server.port, impostor))

    with pytest.raises(HostKeyChanged, match=re.escape(
            f"the host key has changed: the server sent {server.fingerprint}, {known_hosts} has "
            f"{fingerprint(impostor)}")):
        connect(endpoint(server, known_hosts=known_hosts))


def test_a_client_key_the_server_does_not_know_is_refused(server, tmp_path):
    stranger = make_key(tmp_path / "stranger")
    with pytest.raises(AuthRefused, match=f"^ssh {server.user}@127.0.0.1:{server.port}: the server refused the key "
                                          f"{stranger}; check that it is authorized for this user$"):
        connect(endpoint(server, key_file=stranger))


def test_a_password_is_offered_after_the_key_and_never_shown(server, tmp_path):
    stranger = make_key(tmp_path / "stranger")
    with pytest.raises(AuthRefused, match="the server refused the key .+ and the password; check") as caught:
        connect(endpoint(server, key_file=stranger, password=SecretStr("hunter2")))  # the lab allows no passwords
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_rsa_and_ecdsa_keys(server, tmp_path, kind):
    key = authorize(server, new_key(tmp_path / kind, kind))
    connected = connect(endpoint(server, key_file=key))
    try:
        assert run(connected, "echo ok", timeout=10)[1] == b"ok\n"
    finally:
        connected.close()


@pytest.mark.parametrize(("kind", "pem"), [("ed25519", False), ("rsa", True)])  # OpenSSH and legacy PEM files
def test_an_encrypted_key_needs_its_passphrase(server, tmp_path, kind, pem):
    key = authorize(server, new_key(tmp_path / "locked", kind, passphrase="open sesame", pem=pem))

    with pytest.raises(SshError, match=f"^key_file {key} is encrypted; set key_passphrase: to a reference"):
        connect(endpoint(server, key_file=key))
    with pytest.raises(SshError, match=f"^key_file {key} cannot be decrypted with key_passphrase") as caught:
        connect(endpoint(server, key_file=key, key_passphrase=SecretStr("wrong")))
    assert "wrong" not in str(caught.value).replace("cannot", "")

    connected = connect(endpoint(server, key_file=key, key_passphrase=SecretStr("open sesame")))
    try:
        assert run(connected, "echo unlocked", timeout=10)[1] == b"unlocked\n"
    finally:
        connected.close()


def test_a_jump_host_tunnels_the_connection(server):
    jump = connect(endpoint(server))
    target = connect(endpoint(server), via=jump.get_transport())
    try:
        assert run(target, "echo through", timeout=10)[1] == b"through\n"
        jump.close()  # the tunnel goes with the jump host's connection
        with pytest.raises(SshError):
            run(target, "echo gone", timeout=5)
    finally:
        target.close()
        jump.close()


def test_a_jump_host_that_cannot_reach_the_target_says_so(server):
    jump = connect(endpoint(server))
    try:
        with pytest.raises(SshError, match=r"the jump host 127\.0\.0\.1:\d+ did not open a tunnel .+; "
                                           r"check AllowTcpForwarding there"):
            connect(endpoint(server, port=free_port()), via=jump.get_transport())
    finally:
        jump.close()


def test_a_closed_port_is_refused_clearly(server):
    port = free_port()
    with pytest.raises(SshError, match=f"127.0.0.1:{port}: connection refused; check the host and port"):
        connect(endpoint(server, port=port))


def test_a_server_that_never_speaks_times_out(server):
    with unaccepted() as port:
        expected = f"127.0.0.1:{port}: no SSH banner within 1s (is this an SSH server?)"
        with pytest.raises(SshError, match=re.escape(expected)):
            connect(endpoint(server, port=port, timeout=1.0))


def test_a_server_that_hangs_up_before_its_banner_says_so(server):
    """paramiko's caller sees "No existing session" or the banner error alike: the two are told apart."""
    with socket.socket() as rude:
        rude.bind(("127.0.0.1", 0))
        rude.listen()
        port = rude.getsockname()[1]
        hang_up = threading.Thread(target=lambda: rude.accept()[0].close(), daemon=True)
        hang_up.start()
        expected = f"127.0.0.1:{port}: the server hung up before sending an SSH banner (is this an SSH server?)"
        with pytest.raises(SshError, match=re.escape(expected)):
            connect(endpoint(server, port=port, timeout=5.0))
        hang_up.join(5)


class _Target(SshFields):
    """As a kind's Config mixes the fields in."""


@pytest.mark.parametrize(("fields", "problem"), [
    ({"known_hosts": "/k", "host_key_fingerprint": "SHA256:" + "A" * 43}, "set one of known_hosts or"),
    ({}, "set one of known_hosts or"),
    ({"known_hosts": "/k", "key_file": None}, "set key_file (or password)"),
    ({"known_hosts": "/k", "key_file": None, "password": "${env:VIGIL_TEST_SSH_PW}",
      "key_passphrase": "${env:VIGIL_TEST_SSH_PW}"}, "key_passphrase is set but key_file is not"),
    ({"known_hosts": "/k", "key_passphrase": "inline"}, "must be a secret reference"),
])
def test_the_shared_config_fields_refuse_what_cannot_work(fields, problem, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_SSH_PW", "pw")
    with pytest.raises(ValidationError, match=re.escape(problem)):
        _Target.model_validate({"host": "nas", "user": "vigil", "key_file": "/key", **fields})


def test_the_shared_config_fields_make_an_endpoint(monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_SSH_PW", "pw")
    config = _Target.model_validate({"host": "nas", "user": "vigil", "key_file": "/key", "known_hosts": "/k",
                                     "key_passphrase": "${env:VIGIL_TEST_SSH_PW}"})
    made = config.endpoint(timeout=7)
    assert (made.where, made.timeout, made.key_passphrase.get_secret_value()) == ("vigil@nas:22", 7, "pw")
    assert all(field.description for field in SshFields.model_fields.values())
    assert isinstance(config, BaseModel)


def test_a_malformed_known_hosts_line_is_named_before_connecting(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("[127.0.0.1]:2 ssh-ed25519 AAAAnot-base64\n")
    endpoint = SshEndpoint("127.0.0.1", free_port(), "vigil", make_key(tmp_path / "key"), None, None,
                           known_hosts, None, timeout=2)
    with pytest.raises(SshError, match=r"has a line that is not a host key \(\[127.0.0.1\]:2 \.\.\.\): fix or remove"):
        connect(endpoint)
