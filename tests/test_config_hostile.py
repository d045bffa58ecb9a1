"""Broken and hostile config files: always a ConfigError with file:line, from check-config
(exit 2) and from SIGHUP (old config kept, READY=1 after RELOADING=1)."""

from __future__ import annotations

import pytest

from agent.cli import main
from tests.lab.harness import wait_until
from tests.test_lifecycle import metric, notify_socket, received, sighup_until_ready  # noqa: F401 (a fixture)

BACKUP = """backups:
  - name: nightly
    schedule: "0 1 * * *"
    deadline: 4h
    primary: {kind: files, path: /srv/backups}
"""
LAUGHS = "".join([f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]\n" for n in range(1, 10)])
# each anchor nests the one before 30 deep: no line is deeper than 31, the values are 1,200 deep
DEEP_ALIASES = "d0: &d0 x\n" + "".join(f"d{n}: &d{n} {'[' * 30}*d{n - 1}{']' * 30}\n" for n in range(1, 41))

BROKEN = {  # name: (text, the line the error names, what it says)
    "a NUL byte": ("targets:\n  - name: a\x00\n    kind: host\n", 2, "U+0000 is not allowed"),
    "a size beyond any disk": (BACKUP + "    min_size: " + "9" * 400 + "PiB\n", 6, "min_size: the size is too large"),
    "a recursive alias": ("targets: &loop\n  - *loop\n", 1, "recursive alias"),
    "an impossible date": ("targets:\n  - name: a\n    kind: host\n    interval: 2024-13-01\n", 4,
                           "`2024-13-01` reads as a date but is not one"),
    "a billion laughs": ("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + LAUGHS + "targets: *l9\n", None,
                         "aliases expand to more than"),
    "deep nesting": ("targets:\n  - name: a\n    kind: host\n    labels: " + "[" * 5000 + "]" * 5000 + "\n", 4,
                     "nested more than"),
    "deep nesting in a block": ("targets:\n" + "".join("  " * n + "- a:\n" for n in range(1, 600)), 17,
                                "nested more than"),
    "deep nesting through aliases": (DEEP_ALIASES + "targets: *d40\n", 2, "aliases nest these values more than"),
    "an endless duration": ("targets:\n  - name: a\n    kind: host\n    interval: " + "9" * 400 + "d\n", 4,
                            "too long"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_check_config_names_the_line(tmp_path, capsys, case, fault_report):
    text, line, message = BROKEN[case]
    config = tmp_path / "vigil.yaml"
    config.write_text(text)
    status = main(["check-config", "-c", str(config)])
    first = capsys.readouterr().err.splitlines()[0]
    fault_report(f"a config with {case}", "check-config exits 2 with one line naming the file and line",
                 f"exit {status}: {first.removeprefix(str(tmp_path) + '/')}")
    assert status == 2
    assert first.startswith(f"{config}:{line or ''}"), first
    assert message in first


def test_a_huge_file_is_refused_before_parsing(tmp_path, capsys):
    config = tmp_path / "vigil.yaml"
    config.write_text("# " + "x" * 2_000_000 + "\n")
    assert main(["check-config", "-c", str(config)]) == 2
    assert "larger than 1024 KiB" in capsys.readouterr().err


def test_every_broken_config_on_sighup_keeps_the_old_one_and_ends_in_ready(start_agent, write_config,
                                                                         notify_socket):  # noqa: F811
    sock, path = notify_socket
    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                          "  - {name: a, kind: host, interval: 1s}\n")
    good = config.read_text()
    agent = start_agent(config, env={"NOTIFY_SOCKET": str(path)})
    received(sock, 0.3)
    wait_until(lambda: metric(agent.metrics(), "vigil_up", "a") == 1, 10, "the first collection")
    for case, (text, _, message) in BROKEN.items():
        config.write_text(good.split("targets:")[0] + text)
        messages = [m.split("\n")[0] for m in sighup_until_ready(agent, sock)]
        assert messages == ["RELOADING=1", "READY=1"], (case, messages)
        wait_until(lambda: message in agent.peer.output(), 5, f"the rejection of {case}")  # noqa: B023
        assert agent.peer.alive(), case
        assert metric(agent.metrics(), "vigil_up", "a") == 1, case
    assert "Traceback" not in agent.peer.output()
    assert agent.peer.output().count("reload rejected, keeping the running config") == len(BROKEN)
