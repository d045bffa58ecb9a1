"""Secret files that block, never end, or are not what they seem: each refused at once with a reason
that names the reference (never its content), read off the event loop, and a loose one warned of."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess

import pytest

from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import wait_until
from tests.test_lifecycle import metric

COUNTING = ("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
            "  - {name: ticking, kind: counting, interval: 300ms}\n")
MERAKI = "  - name: meraki\n    kind: meraki\n    api_key: ${{file:{path}}}\n"


def check_config(config, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`vigil check-config` in a process of its own, with 1 GiB of address space: a config that makes it
    read without end fails here in seconds instead of taking the machine's memory."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(vigil_argv("check-config", "-c", str(config)), cwd=ROOT, capture_output=True, text=True,
                          timeout=60, preexec_fn=limited, env={**os.environ, **(env or {})})


def test_a_reload_whose_secret_is_a_fifo_fails_and_the_agent_keeps_collecting_and_stops(
        start_agent, write_config, tmp_path, fault_report):
    """The issue's repro: SIGHUP with `${file:FIFO}` froze collection (the read waited on the event loop
    for a writer that never came) and SIGTERM was ignored."""
    fifo = tmp_path / "meraki-key"
    os.mkfifo(fifo)
    config = write_config(COUNTING)
    agent = start_agent(config, test_kinds=True)
    wait_until(lambda: metric(agent.metrics(), "vigil_test_ticks", "ticking"), 10, "the first collection")
    config.write_text(config.read_text() + MERAKI.format(path=fifo))
    agent.peer.signal(signal.SIGHUP)
    wait_until(lambda: "reload rejected" in agent.peer.output(), 20, "the reload to be rejected")
    reason = json.loads(agent.get("/status.json")[1])["reload_error"]
    assert f"targets[1].api_key: secret file {fifo} is not a regular file (a FIFO)" in reason, reason
    ticks = metric(agent.metrics(), "vigil_test_ticks", "ticking")
    wait_until(lambda: metric(agent.metrics(), "vigil_test_ticks", "ticking") >= ticks + 3, 10,
               "the running target to keep its schedule")
    assert "vigil_config_reload_success 0" in agent.metrics()
    agent.peer.signal(signal.SIGTERM)
    assert agent.peer.process.wait(10) == 0
    fault_report(fault="SIGHUP with a ${file:} secret that is a FIFO", expected="reload refused naming the file; "
                 "collection on schedule; SIGTERM stops", observed=reason.replace(f"{tmp_path}/", ""))


def test_a_reload_that_cannot_read_its_config_gives_up_at_the_deadline(start_agent, write_config, tmp_path,
                                                                        fault_report):
    """A file that never answers (a hung mount; here a FIFO in place of the config, whose open waits for a
    writer): each reload gives up after its deadline, leaving its thread waiting; past three such threads a
    reload is refused at once; once the file answers they end, and a reload applies."""
    config = write_config(COUNTING)
    agent = start_agent(config, test_kinds=True)
    good = config.read_text()
    config.unlink()
    os.mkfifo(config)
    for count in (1, 2, 3):
        agent.peer.signal(signal.SIGHUP)
        wait_until(lambda count=count: agent.peer.output().count("reload rejected") == count, 30,
                   "the reload to give up")
    reason = json.loads(agent.get("/status.json")[1])["reload_error"]
    assert reason.startswith(f"{config}: not read within 10s"), reason
    ticks = metric(agent.metrics(), "vigil_test_ticks", "ticking")
    wait_until(lambda: metric(agent.metrics(), "vigil_test_ticks", "ticking") >= ticks + 3, 10,
               "the running target to keep its schedule")
    agent.peer.signal(signal.SIGHUP)
    wait_until(lambda: agent.peer.output().count("reload rejected") == 4, 10, "the fourth reload refused")
    refused = json.loads(agent.get("/status.json")[1])["reload_error"]
    assert refused == f"{config}: 3 earlier reloads still wait for a file that does not answer; restart vigil " \
                      "once it answers", refused
    writer = os.open(config, os.O_WRONLY | os.O_NONBLOCK)  # the waiting reloads have it open: they read and end
    os.write(writer, good.encode())
    os.close(writer)
    config.unlink()
    config.write_text(good + "  - {name: added, kind: counting, interval: 300ms}\n")

    def reloaded() -> float | None:
        agent.peer.signal(signal.SIGHUP)
        return metric(agent.metrics(), "vigil_test_ticks", "added")

    wait_until(reloaded, 20, "a reload to apply", interval=1.0)
    agent.peer.signal(signal.SIGTERM)
    assert agent.peer.process.wait(10) == 0
    fault_report(fault="SIGHUP x4 while the config's file never answers",
                 expected="each reload given up at its deadline, the 4th refused at once; a reload applies once it "
                          "answers", observed=f"{reason}; {refused}".replace(f"{tmp_path}/", ""))


@pytest.mark.parametrize("what, make, expected", [
    ("/dev/zero", None, "is not a regular file (a character device)"),
    ("a FIFO", os.mkfifo, "is not a regular file (a FIFO)"),
    ("a directory", os.mkdir, "is not a regular file (a directory)"),
    ("a 1 GiB file", lambda path: os.truncate(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600), 1 << 30),
     "is larger than 64 KiB: is it the secret?"),
])
def test_check_config_refuses_a_secret_file_that_is_not_a_small_regular_file(write_config, tmp_path, what, make,
                                                                            expected, fault_report):
    path = "/dev/zero" if make is None else tmp_path / "secret"
    if make is not None:
        make(path)
    config = write_config(COUNTING.replace("counting", "host") + MERAKI.format(path=path))
    done = check_config(config)
    assert done.returncode == 2, done.stderr
    assert f"{config}:7: targets[1].api_key: secret file {path} {expected}" in done.stderr, done.stderr
    fault_report(fault=f"check-config, a ${{file:}} secret that is {what}", expected="exit 2, the file named",
                 observed=done.stderr.splitlines()[0].replace(f"{tmp_path}/", ""))
