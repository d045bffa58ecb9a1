"""`vigil web hash-password`: a hash that the real endpoint accepts, with no htpasswd at hand."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import bcrypt
import pytest

from agent.config import ConfigError
from exporters.webconfig import load_web_config
from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import Peer, free_port, wait_until
from tests.test_web import get

PASSWORD = "correct horse battery staple"  # noqa: S105 (this test's own)


def hash_password(stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run(vigil_argv("web", "hash-password"), input=stdin, capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def typed(*lines: str) -> tuple[int, str]:
    """`vigil web hash-password` on a terminal: each line typed after the prompt before it."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: vigil, with the pseudo-terminal as its controlling terminal
        os.chdir(ROOT)
        os.execv(vigil_argv()[0], vigil_argv("web", "hash-password"))  # noqa: S606 (vigil, a fixed argv)
    screen, deadline, pending = b"", time.monotonic() + 60, list(lines)
    while time.monotonic() < deadline:
        if pending and screen.endswith(b": "):  # a prompt, written once the terminal stopped echoing
            os.write(terminal, pending.pop(0).encode() + b"\n")
        if not select.select([terminal], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            break
        screen += chunk
    os.close(terminal)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), screen.decode()


def test_a_hash_from_stdin_opens_the_real_endpoint(tmp_path):
    done = hash_password(PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{done.stdout.strip()}'\n")
    port = free_port()
    config = tmp_path / "vigil.yaml"
    config.write_text(f"listen: 127.0.0.1:{port}\nstate_dir: {tmp_path}/state\nweb_config: {web}\n")
    agent = Peer(vigil_argv("run", "-c", str(config)), tmp_path / "agent.log", cwd=ROOT)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: get(url, user="prometheus", password=PASSWORD)[0] == 200, 20, "the password to open it")
        assert get(url, user="prometheus", password=PASSWORD + " ")[0] == 401
        assert get(url)[0] == 401
    finally:
        agent.stop()


def test_the_prompt_asks_twice_and_never_shows_the_password():
    code, screen = typed(PASSWORD, PASSWORD)
    assert code == 0, screen
    assert "Password: " in screen and "Again: " in screen and PASSWORD not in screen
    hashed = screen.split()[-1]
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())

    code, screen = typed(PASSWORD, "a typo")
    assert code == 1 and "the two passwords differ; nothing was printed" in screen and "$2b$" not in screen


def test_an_empty_or_too_long_password_is_refused():
    for stdin, reason in (("", "the password is empty"), ("\n", "the password is empty"),
                          ("é" * 37, "longer than bcrypt's 72 bytes")):
        done = hash_password(stdin)
        assert (done.returncode, done.stdout) == (1, "") and reason in done.stderr, done.stderr


def test_a_password_written_where_its_hash_belongs_names_the_command(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: {PASSWORD}\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(web)
    assert "(make one with: vigil web hash-password)" in str(caught.value.issues[0])
