"""The agent as systemd runs it: notify, watchdog, reload, stop, crash and restart."""

from __future__ import annotations

import re
import signal
import socket
import time

import pytest

from tests.lab.harness import wait_until

TWO_TARGETS = """
listen: 127.0.0.1:{port}
state_dir: {state}
targets:
  - {name: web, kind: flaky, fail_when: "{state}/broken", interval: 300ms}
  - {name: stuck, kind: hanging, interval: 300ms}
"""


def metric(text: str, name: str, target: str) -> float | None:
    match = re.search(rf'^{name}{{[^}}]*target="{target}"[^}}]*}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield sock, path
    sock.close()


def received(sock: socket.socket, seconds: float) -> list[str]:
    messages, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    return messages


def sighup_until_ready(agent, sock: socket.socket) -> list[str]:
    """SIGHUP, and the notify messages up to READY=1 (the test fails if it never comes)."""
    agent.peer.signal(signal.SIGHUP)
    messages: list[str] = []
    deadline = time.monotonic() + 20
    while not messages or messages[-1] != "READY=1":
        assert time.monotonic() < deadline, f"no READY=1 after the reload: {messages}"
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return messages


def test_systemd_notify_watchdog_and_a_clean_stop(start_agent, write_config, notify_socket):
    sock, path = notify_socket
    agent = start_agent(write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                                     "  - {name: me, kind: host, interval: 1s}\n"),
                        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
    messages = received(sock, 1.5)
    assert messages[0].startswith("READY=1\nSTATUS=serving http://127.0.0.1:")
    assert messages.count("WATCHDOG=1") >= 3  # every 200 ms, half of WatchdogSec
    started = time.monotonic()
    agent.peer.signal(signal.SIGTERM)
    assert agent.peer.process.wait(10) == 0
    assert time.monotonic() - started < 10
    assert "STOPPING=1" in received(sock, 0.5)


def test_a_hanging_target_leaves_the_others_on_schedule_and_stop_still_works(start_agent, write_config):
    agent = start_agent(write_config(TWO_TARGETS), test_kinds=True)
    wait_until(lambda: (metric(agent.metrics(), "vigil_test_ticks", "web") or 0) >= 8, 10,
               "the healthy target to keep running every 300ms")
    text = agent.metrics()
    assert metric(text, "vigil_up", "stuck") == 0
    assert metric(text, "vigil_collect_skipped_total", "stuck") >= 1
    agent.peer.signal(signal.SIGTERM)
    assert agent.peer.process.wait(10) == 0, "a hung collector thread must not keep the agent alive"


def test_healthy_says_so_when_the_event_loop_is_stuck_and_again_when_it_turns(start_agent, write_config, tmp_path):
    """The endpoint answers from its own thread: without the loop's heartbeat it would say OK while
    nothing is collected (a blocking call on the loop, a file read that never ends)."""
    frozen = tmp_path / "frozen"
    agent = start_agent(write_config(f"""
listen: 127.0.0.1:{{port}}
state_dir: {{state}}
targets:
  - {{name: buggy, kind: freezing, freeze_when: "{frozen}", interval: 300ms}}
"""), test_kinds=True)
    assert agent.get("/-/healthy") == (200, b"OK\n")
    frozen.touch()
    wait_until(lambda: agent.get("/-/healthy")[0] == 503, 30, "/-/healthy to see the stuck loop")
    status, body = agent.get("/-/healthy")
    assert status == 503 and body.startswith(b"Event loop stalled for "), body
    assert agent.get("/-/ready")[0] == 200  # ready: it serves; healthy: it works
    frozen.unlink()
    wait_until(lambda: agent.get("/-/healthy") == (200, b"OK\n"), 10, "/-/healthy to recover")


def test_kill_9_then_restart_brings_back_last_success(start_agent, write_config):
    config = write_config(TWO_TARGETS)
    first = start_agent(config, test_kinds=True)
    wait_until(lambda: metric(first.metrics(), "vigil_last_success_timestamp_seconds", "web"), 10,
               "a first success")
    time.sleep(0.5)  # more runs, and the stuck target's run is in progress
    before = metric(first.metrics(), "vigil_last_success_timestamp_seconds", "web")
    first.peer.signal(signal.SIGKILL)
    first.peer.process.wait(5)

    # the same target now fails: its last success can only come from the database
    (config.parent / "state" / "broken").touch()
    second = start_agent(config, test_kinds=True)
    wait_until(lambda: metric(second.metrics(), "vigil_up", "web") == 0, 10, "the failing run")
    text = second.metrics()
    assert metric(text, "vigil_last_success_timestamp_seconds", "web") == pytest.approx(before, abs=0.5)
    assert metric(text, "vigil_last_success_timestamp_seconds", "stuck") is None


def test_sighup_reloads_and_an_invalid_config_keeps_the_old_one(start_agent, write_config, notify_socket):
    sock, path = notify_socket
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                          "  - {name: a, kind: host, interval: 1s}\n")
    agent = start_agent(config, env={"NOTIFY_SOCKET": str(path)})
    received(sock, 0.3)
    config.write_text(config.read_text() + "  - {name: b, kind: host, interval: 1s}\n")
    agent.peer.signal(signal.SIGHUP)
    wait_until(lambda: metric(agent.metrics(), "vigil_up", "b") == 1, 10, "the new target b")
    assert [m.split("\n")[0] for m in received(sock, 0.5)] == ["RELOADING=1", "READY=1"]
    assert f"reloaded config={config} targets=2 backups=0" in agent.peer.output()

    config.write_text(config.read_text() + "  - {name: c, kind: host, intervl: 1s}\n")
    agent.peer.signal(signal.SIGHUP)
    wait_until(lambda: "reload rejected" in agent.peer.output(), 10, "the rejection in the log")
    assert "unknown key `intervl`; did you mean `interval`?" in agent.peer.output()
    text = agent.metrics()
    assert metric(text, "vigil_up", "a") == 1 and metric(text, "vigil_up", "b") == 1
    assert agent.peer.alive()


def test_a_port_in_use_is_one_clear_line(write_config, tmp_path):
    import subprocess

    from tests.conftest import ROOT, vigil_argv

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\n", port=port)
        done = subprocess.run(vigil_argv("run", "-c", str(config)), capture_output=True, text=True,
                              cwd=ROOT, timeout=20)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"vigil: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in done.stderr


def test_the_first_scrape_after_a_restart_already_lists_every_job_with_its_last_success(start_agent,
                                                                                       write_config):
    """Ready comes only after the restored state is published: no restart gives an empty first scrape."""
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                          "  - {name: a, kind: counting, interval: 1h}\n  - {name: b, kind: counting, interval: 1h}\n")
    agent = start_agent(config, test_kinds=True)
    wait_until(lambda: all(metric(agent.metrics(), "vigil_last_success_timestamp_seconds", target)
                           for target in ("a", "b")), 20, "a first success of each")
    agent.peer.stop()
    for _ in range(8):
        agent = start_agent(config, test_kinds=True)  # returns as soon as /-/ready says 200
        first = agent.metrics()
        agent.peer.stop()
        for target in ("a", "b"):
            assert metric(first, "vigil_last_success_timestamp_seconds", target), first
            assert metric(first, "vigil_collect_interval_seconds", target) == 3600
