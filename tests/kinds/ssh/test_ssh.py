"""The ssh collector against a real OpenSSH sshd on loopback: this machine polled as a remote server.

Values are checked against what this machine really has; failures (host keys, client keys,
a dead or hung server, garbage output) must each give one clear reason.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shlex
import signal
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pytest

from agent.clock import Clock
from agent.collector import Emitter, run_once
from agent.config import AgentConfig, ConfigError, load_config
from agent.net.ssh import AuthRefused, HostKeyChanged, HostKeyUnknown, SshError
from collectors.ssh.collector import INVENTORY, SshCollector
from collectors.ssh.output import OutputError
from tests import collector_kit
from tests.kinds.ssh.fixtures import FIXTURES, ssh_target, windows_reply
from tests.lab.sshd import Sshd, known_hosts_line, make_key, sshd

MAIN_ONLY = frozenset({"main"})


def values(out, name):
    return collector_kit.values(out, name)


def collect(server, context, due=None, **changes):
    return collector_kit.collect(ssh_target(server, **changes), context, due)


def instance(target: dict, context) -> SshCollector:
    return collector_kit.build(target, context)


def sshd_log_accepts(server) -> int:
    return (server.key_file.parent / "sshd.log").read_text(errors="replace").count("Accepted publickey")


# -- this machine, through sshd -------------------------------------------------------------

def test_a_linux_server_polled_over_ssh_shows_what_this_machine_has(ssh_server, context):
    out = collect(ssh_server, context)
    assert not out.errors
    root = os.statvfs("/")
    labels = next(labels for labels in values(out, "vigil_server_filesystem_size_bytes")
                  if dict(labels)["mountpoint"] == "/")
    assert values(out, "vigil_server_filesystem_size_bytes")[labels] == root.f_blocks * root.f_frsize
    assert values(out, "vigil_server_filesystem_files")[labels] == root.f_files
    assert abs(values(out, "vigil_server_filesystem_avail_bytes")[labels] - root.f_bavail * root.f_frsize) < 64 << 20
    assert values(out, "vigil_server_filesystem_readonly")[labels] == 0
    meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024
               for line in Path("/proc/meminfo").read_text().splitlines()}
    assert values(out, "vigil_server_memory_total_bytes") == {(): meminfo["MemTotal"]}
    assert values(out, "vigil_server_swap_total_bytes") == {(): meminfo["SwapTotal"]}
    btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("btime"))
    assert values(out, "vigil_server_boot_time_timestamp_seconds") == {(): btime}
    assert values(out, "vigil_server_cpus") == {(): os.cpu_count()}
    assert {(("mode", mode),) for mode in ("user", "system", "idle", "iowait", "steal")} <= set(
        values(out, "vigil_server_cpu_seconds_total"))
    assert all(dict(labels)["device"] != "lo" for labels in values(out, "vigil_server_network_receive_bytes_total"))
    assert values(out, "vigil_server_load1")[()] >= 0


def test_systemd_failed_units_a_pending_reboot_and_the_clock_state(ssh_server, context):
    out = collect(ssh_server, context, MAIN_ONLY)
    assert values(out, "vigil_server_systemd_failed_units") == {(): 2}
    assert set(values(out, "vigil_server_systemd_failed_unit_info")) == {
        (("unit", "backup.service"),), (("unit", "certbot.service"),)}
    assert values(out, "vigil_server_reboot_required") == {(): 1}
    assert values(out, "vigil_server_time_synchronized") == {(): 1}


def test_the_inventory_signal_reads_updates_os_and_kernel(ssh_server, context):
    out = collect(ssh_server, context)
    assert not out.errors
    (info,) = values(out, "vigil_server_info")
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    assert dict(info)["os"] == "linux" and dict(info)["version"] == release["PRETTY_NAME"].strip('"')
    assert values(out, "vigil_server_kernel_info") == {(("release", os.uname().release),): 1}
    updates = values(out, "vigil_server_updates_pending")
    assert set(updates) == {(("type", "all"),), (("type", "security"),)}
    assert updates[(("type", "all"),)] >= updates[(("type", "security"),)] >= 0


def test_one_exec_per_fast_poll_and_one_more_when_the_inventory_is_due(ssh_server, context):
    collect(ssh_server, context, MAIN_ONLY)
    assert context.api.requests() == {("exec", "0"): 1}
    out = collect(ssh_server, context, MAIN_ONLY)
    assert not values(out, "vigil_server_updates_pending") and not values(out, "vigil_server_info")
    assert INVENTORY not in out.ran
    collect(ssh_server, context)
    assert context.api.requests() == {("exec", "0"): 4}


def test_the_inventory_interval_is_configurable(ssh_server, context):
    signals = instance(ssh_target(ssh_server, updates_every="1h"), context).signals()
    assert signals[INVENTORY].every == 3600 and signals["main"].every is None
    assert instance(ssh_target(ssh_server), context).signals()[INVENTORY].every == 6 * 3600


def test_every_declared_family_shows_on_the_linux_and_windows_servers(ssh_conformance, context):
    """What tests/test_conformance.py does, with its two targets: each conforms, together they show all."""
    out = collector_kit.collect(ssh_conformance, context)
    collector_kit.assert_conforms(out, SshCollector)
    assert values(out, "vigil_server_load1") and values(out, "vigil_server_windows_last_hotfix_timestamp_seconds")


# -- host keys and client keys: refused before any command ---------------------------------

def test_an_unknown_host_key_is_refused_and_no_command_is_sent(ssh_server, context, tmp_path):
    other = make_key(tmp_path / "other")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(ssh_server.port + 1, other))  # another server's line only
    accepted = sshd_log_accepts(ssh_server)
    with pytest.raises(HostKeyUnknown, match=r"key \(SHA256:\S+\) is not in .*known_hosts; check it and add it"):
        collect(ssh_server, context, known_hosts=str(known_hosts))
    assert sshd_log_accepts(ssh_server) == accepted
    assert context.api.requests() == {}


def test_a_changed_host_key_is_refused_with_both_fingerprints(ssh_server, context, tmp_path):
    other = make_key(tmp_path / "other")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(ssh_server.port, other))
    accepted = sshd_log_accepts(ssh_server)
    changed = "the host key has changed: the server sent " + re.escape(ssh_server.fingerprint)
    with pytest.raises(HostKeyChanged, match=changed):
        collect(ssh_server, context, known_hosts=str(known_hosts))
    assert sshd_log_accepts(ssh_server) == accepted and context.api.requests() == {}


def test_a_pinned_fingerprint_is_enough_and_a_wrong_one_is_refused(ssh_server, context):
    target = ssh_target(ssh_server, known_hosts=None, host_key_fingerprint=ssh_server.fingerprint)
    assert not collector_kit.collect(target, context, MAIN_ONLY).errors
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(HostKeyUnknown, match=re.escape(f"not the pinned {wrong}")):
        collector_kit.collect({**target, "host_key_fingerprint": wrong}, context, MAIN_ONLY)


def test_a_client_key_the_server_does_not_know_is_refused(ssh_server, context, tmp_path):
    stranger = make_key(tmp_path / "stranger")
    with pytest.raises(AuthRefused, match=f"refused the key {stranger}; check that it is authorized"):
        collect(ssh_server, context, key_file=str(stranger))
    assert context.api.requests() == {}


# -- a server that dies, hangs or says nonsense ---------------------------------------------

FAKE_APT = """#!/bin/sh
echo Listing...
echo 'openssl/stable-security 3.0.15-1~deb12u1 amd64 [upgradable from: 3.0.14-1~deb12u2]'
echo 'tzdata/stable-updates 2026a-0+deb12u1 all [upgradable from: 2025b-0+deb12u1]'
"""


@pytest.fixture
def make_server(tmp_path):
    """sshd servers whose sessions find an `awk` that hangs or prints garbage when told to in their
    `mode` file, and an `apt` that lists two upgrades at once (the real one takes seconds) or,
    told so, slowly."""
    with ExitStack() as stack:
        def make(name: str = "broken") -> tuple[Sshd, Path]:
            tools = tmp_path / name / "bin"
            tools.mkdir(parents=True)
            mode = tools / "mode"
            mode.write_text("ok")
            (tools / "awk").write_text(
                f"#!/bin/sh\nmode=$(/bin/cat {mode})\n"
                "[ \"$mode\" = hang ] && exec sleep 600\n"
                "[ \"$mode\" = garbage ] && { printf '@@vigil stat\\ncpu  lots of garbage\\n'; exit 0; }\n"
                "exec /usr/bin/awk \"$@\"\n")
            (tools / "awk").chmod(0o755)
            slow = f"[ \"$(/bin/cat {mode})\" = slow ] && sleep 10\n"
            (tools / "apt").write_text(FAKE_APT.replace("echo Listing...", slow + "echo Listing..."))
            (tools / "apt").chmod(0o755)
            server = stack.enter_context(sshd(tmp_path / name / "sshd", path=f"{tools}:/usr/bin:/bin:/usr/sbin:/sbin"))
            return server, mode

        yield make


@pytest.fixture
def broken_server(make_server):
    return make_server()


def test_a_hung_command_is_stopped_at_the_command_timeout(broken_server, context):
    server, mode = broken_server
    mode.write_text("hang")
    with pytest.raises(SshError, match=r"^ssh .*@127\.0\.0\.1:\d+: the poll script linux_poll\.sh did not "
                                       r"finish within 1s; stopped it$"):  # the script by name, not its quoting
        collect(server, context, MAIN_ONLY, command_timeout="1s")


def test_hung_commands_are_ended_on_the_server_too(broken_server, context, fault_report):
    """sshd does not stop a command without a terminal when its channel closes: each command is bounded
    on the server as well, so three polls that timed out leave nothing running there."""
    server, mode = broken_server
    mode.write_text("hang")
    for _ in range(3):
        with pytest.raises(SshError, match=r"did not finish within 2s; stopped it"):
            collect(server, context, MAIN_ONLY, command_timeout="2s")
    stopped = time.monotonic()
    while (left := server.commands()) and time.monotonic() < stopped + 15:
        time.sleep(0.1)
    fault_report(fault="ssh: the server's command hangs, 3 polls, command_timeout 2s",
                 expected="stopped; nothing left on the server", observed=f"{len(left)} processes left",
                 recovered_in=None if left else time.monotonic() - stopped)
    assert not left, f"still running on the server: {left}"


def test_garbage_output_fails_the_run_with_the_reason(broken_server, context):
    server, mode = broken_server
    mode.write_text("garbage")
    with pytest.raises(OutputError, match=r"ssh .*@127\.0\.0\.1:\d+: unexpected reply: "):
        collect(server, context, MAIN_ONLY)


def test_a_slow_inventory_fails_its_signal_within_the_runs_timeout_not_the_run(broken_server, context):
    server, mode = broken_server
    mode.write_text("slow")
    out = collector_kit.collect(ssh_target(server), replace(context, timeout=3.0))
    assert values(out, "vigil_server_cpus") and not values(out, "vigil_server_updates_pending")
    assert re.fullmatch(r"ssh .*: the inventory script linux_inventory\.sh did not finish within [\d.]+s; stopped it",
                        out.errors[INVENTORY]), out.errors[INVENTORY]
    # a run whose time is spent by the main poll (each reading of this clock is 5 s after the last)
    out = collector_kit.collect(ssh_target(server), replace(context, timeout=8.0, clock=StepClock()))
    assert values(out, "vigil_server_cpus")
    assert out.errors[INVENTORY].endswith("0.0s left of the run's 8s timeout for the inventory; give the target a "
                                          "longer timeout")


class StepClock(Clock):
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 5
        return self.now


def test_a_reply_without_sections_is_named(broken_server, context):
    """A shell rc file or a forced command that prints something else."""
    from collectors.ssh.linux import emit_poll

    with pytest.raises(OutputError, match="no vigil sections .*'Welcome"):
        emit_poll(Emitter(SshCollector.METRICS, strict=True), "Welcome to the server!\n")
    with pytest.raises(OutputError, match="cut short"):
        emit_poll(Emitter(SshCollector.METRICS, strict=True), "@@vigil stat\ncpu 1 2 3\n")


def test_a_kept_connection_whose_server_went_silent_is_named_so(tmp_path, context):
    """The connection's own sshd process hangs (a stuck host): paramiko says only "Timeout opening channel."."""
    with sshd(tmp_path / "sshd") as server:
        collector = instance(ssh_target(server, command_timeout="2s"), replace(context, timeout=4.0))
        collector.open()
        try:
            collector.collect(Emitter(SshCollector.METRICS, context.api, collector.signals(), strict=True), MAIN_ONLY)
            hung = server.connections()
            assert hung
            for pid in hung:
                os.kill(pid, signal.SIGSTOP)
            try:
                with pytest.raises(SshError, match=r"cannot open a session: no answer from the server within [\d.]+s "
                                                   r"\(sshd or the host hangs"):
                    collector.collect(Emitter(SshCollector.METRICS, strict=True), MAIN_ONLY)
            finally:
                for pid in hung:
                    os.kill(pid, signal.SIGCONT)
        finally:
            collector.close()


def test_the_session_is_reused_and_a_new_instance_reconnects_after_sshd_restarts(tmp_path, context):
    with sshd(tmp_path / "sshd") as server:
        collector = instance(ssh_target(server), context)
        collector.open()
        try:
            transport = collector.client.get_transport()
            for _ in range(2):
                out = Emitter(SshCollector.METRICS, context.api, collector.signals(), strict=True)
                collector.collect(out, MAIN_ONLY)
                assert values(out, "vigil_server_cpus")
            assert collector.client.get_transport() is transport and sshd_log_accepts(server) == 1
            server.kill()
            lost = r"ssh .*@127\.0\.0\.1:\d+: (the server closed the connection|cannot open a session)"
            with pytest.raises(SshError, match=lost):
                collector.collect(Emitter(SshCollector.METRICS, strict=True), MAIN_ONLY)
        finally:
            collector.close()
        with pytest.raises(SshError, match="connection refused; check the host and port, and that sshd runs"):
            asyncio.run(run_once(instance(ssh_target(server), context), MAIN_ONLY, strict=True))
        again = server.start_again(tmp_path / "sshd-again.log")
        try:
            out = asyncio.run(run_once(instance(ssh_target(server), context), MAIN_ONLY, strict=True))
            assert values(out, "vigil_server_cpus")
        finally:
            again.stop()


# -- a jump host -------------------------------------------------------------------------------

def test_a_server_reached_through_a_jump_target(ssh_server, context):
    jump = ssh_target(ssh_server, name="bastion")
    inner = ssh_target(ssh_server, name="inner", via="bastion")
    config = AgentConfig.model_validate({"targets": [jump, inner]}).targets[1]
    collector = SshCollector(config, replace(context, kind="ssh", target="inner"))
    out = asyncio.run(run_once(collector, MAIN_ONLY, strict=True))
    assert values(out, "vigil_server_cpus")


def test_via_must_name_an_ssh_target(ssh_server, tmp_path):
    config = tmp_path / "vigil.yaml"
    config.write_text(f"""\
targets:
  - {{name: me, kind: host}}
  - {{name: inner, kind: ssh, host: 127.0.0.1, user: vigil, key_file: {ssh_server.key_file},
     known_hosts: {ssh_server.known_hosts}, via: me}}
""")
    with pytest.raises(ConfigError, match=r"targets\[1\]\.via.*no ssh target is named `me`"):
        load_config(config)


# -- Windows ------------------------------------------------------------------------------------

def test_a_windows_server_gets_one_encoded_powershell_command(ssh_server, context):
    tools = ssh_server.key_file.parent / "bin"
    windows_reply(tools, "windows-2022")
    out = collect(ssh_server, context, os="windows")
    assert not out.errors and context.api.requests() == {("exec", "0"): 1}
    argv = shlex.split((tools / "powershell.args").read_text())
    assert argv[:3] == ["-NoProfile", "-NonInteractive", "-EncodedCommand"] and len(argv) == 4
    script = base64.b64decode(argv[3]).decode("utf-16-le")
    assert script.startswith("$Inventory = $true\n") and "Get-WBSummary" in script
    assert values(out, "vigil_server_cpu_seconds_total") == {
        (("mode", "user"),): 1873.452, (("mode", "system"),): 925.346, (("mode", "idle"),): 40211.89}
    assert values(out, "vigil_server_swap_free_bytes") == {(): 2550136832 - 218103808}
    volumes = {dict(labels)["mountpoint"]: size
               for labels, size in values(out, "vigil_server_filesystem_size_bytes").items()}
    assert volumes["C:\\"] == 126696288256 and volumes["D:\\"] == 1099511627776
    assert values(out, "vigil_server_windows_stopped_auto_services") == {(): 2}  # sppsvc is ignored by default
    assert set(values(out, "vigil_server_windows_stopped_auto_service_info")) == {
        (("service", "MSSQLSERVER"),), (("service", "Spooler"),)}
    assert values(out, "vigil_server_reboot_required") == {(): 1}
    assert values(out, "vigil_server_windows_backup_last_success_timestamp_seconds") == {(): 1764640800}
    assert values(out, "vigil_server_windows_backup_last_ok") == {(): 1}
    assert values(out, "vigil_server_windows_last_hotfix_timestamp_seconds") == {(): 1763596800}
    assert values(out, "vigil_server_info") == {(("model", "PowerEdge R350"), ("os", "windows"), ("serial", "7XK2Q53"),
                                                 ("vendor", "Dell Inc."),
                                                 ("version", "Microsoft Windows Server 2022 Standard 10.0.20348")): 1}
    assert not values(out, "vigil_server_load1") and not values(out, "vigil_server_systemd_failed_units")


def test_a_fast_windows_poll_asks_for_no_inventory(ssh_server, context):
    tools = ssh_server.key_file.parent / "bin"
    windows_reply(tools, "windows-2022")
    out = collect(ssh_server, context, MAIN_ONLY, os="windows")
    script = base64.b64decode(shlex.split((tools / "powershell.args").read_text())[3]).decode("utf-16-le")
    assert script.startswith("$Inventory = $false\n") and not values(out, "vigil_server_info")


def test_a_windows_poll_ends_itself_on_the_server_after_the_command_timeout(ssh_server, context):
    """Windows has no `timeout`: the script's watchdog ends its own process a second after vigil stops
    waiting, an uncaught error ends it at once, and so does the reply. (What is checked here is the
    script sent; no PowerShell runs in the lab.)"""
    tools = ssh_server.key_file.parent / "bin"
    windows_reply(tools, "windows-2022")
    collect(ssh_server, context, MAIN_ONLY, os="windows", command_timeout="6s")
    lines = base64.b64decode(shlex.split((tools / "powershell.args").read_text())[3]).decode("utf-16-le").splitlines()
    assert lines[:2] == ["$Inventory = $false", "$Limit = 7"]
    first_section = next(n for n, line in enumerate(lines) if line.startswith("Section "))
    assert [line for line in lines[:first_section] if "Exit(" in line] == [
        "trap { [Console]::Error.WriteLine($_); [Environment]::Exit(1) }",
        '[void][PowerShell]::Create().AddScript("Start-Sleep -Seconds $Limit; [Environment]::Exit(124)").BeginInvoke()']
    assert lines[-1] == "[Environment]::Exit(0)"


def windows(fixture: str, due=frozenset({"main", INVENTORY}), exclude: tuple[str, ...] = ()) -> Emitter:
    """A recorded reply through the production parsing and mapping."""
    from collectors.ssh import windows as mapping

    out = Emitter(SshCollector.METRICS, strict=True, signals=SshCollector.SIGNALS)
    document = mapping.parse((FIXTURES / f"{fixture}.json").read_text())
    mapping.emit_poll(out, document, ("sppsvc",), exclude)
    if INVENTORY in due:
        with out.signal(INVENTORY):
            mapping.emit_inventory(out, document)
    return out


def test_windows_localized_numbers_single_items_and_missing_sections():
    """A German Windows Server 2016: numbers as strings with decimal commas and spaces, one volume and
    one service (ConvertTo-Json writes them unwrapped), no page file, no Windows Server Backup, and the
    inventory refused."""
    out = windows("windows-2016-de")
    assert values(out, "vigil_server_cpus") == {(): 2}
    assert values(out, "vigil_server_cpu_seconds_total")[(("mode", "user"),)] == 150.0
    assert values(out, "vigil_server_cpu_seconds_total")[(("mode", "idle"),)] == 987.654321
    assert values(out, "vigil_server_memory_available_bytes") == {(): 2147483648}
    assert values(out, "vigil_server_filesystem_free_bytes") == {(("fstype", "NTFS"), ("mountpoint", "C:\\")): 1234.5}
    assert values(out, "vigil_server_windows_stopped_auto_service_info") == {(("service", "wuauserv"),): 1}
    assert values(out, "vigil_server_reboot_required") == {(): 0}
    assert not values(out, "vigil_server_swap_total_bytes") and not values(out, "vigil_server_swap_free_bytes")
    assert not values(out, "vigil_server_windows_backup_last_ok")
    assert out.errors == {INVENTORY: "the os section failed: Zugriff verweigert"}


def test_windows_volumes_are_left_out_by_pattern_whatever_their_case():
    out = windows("windows-2022", MAIN_ONLY, exclude=("\\\\?\\volume*", "d:\\"))
    assert {dict(labels)["mountpoint"] for labels in values(out, "vigil_server_filesystem_size_bytes")} == {"C:\\"}


def test_a_failed_windows_server_backup_is_not_ok():
    out = windows("windows-wsb-failed", MAIN_ONLY)
    assert values(out, "vigil_server_windows_backup_last_ok") == {(): 0}
    assert not values(out, "vigil_server_windows_backup_last_success_timestamp_seconds")
    assert values(out, "vigil_server_windows_stopped_auto_services") == {(): 0}


def test_a_windows_reply_without_cpu_or_memory_fails_with_the_servers_reason():
    with pytest.raises(OutputError, match="the cpu section failed: Access denied"):
        windows("windows-denied")


@pytest.mark.parametrize("reply,reason", [
    ("", "not the script's JSON"),
    ("#< CLIXML\n<Objs Version=\"1.1.0.1\">", "not the script's JSON"),
    ('{"vigil": 1, "cpu": {"count": 2', "not the script's JSON"),
    ('{"something": "else"}', "not the script's JSON"),
    ('{"vigil":1,"cpu":{"count":"many"},"memory":{}}', "cpu.count: expected a number, got 'many'"),
])
def test_a_malformed_windows_reply_is_a_clear_error(reply, reason):
    from collectors.ssh import windows as mapping

    with pytest.raises(OutputError, match=reason):
        mapping.emit_poll(Emitter(SshCollector.METRICS, strict=True), mapping.parse(reply))


def test_the_windows_command_stays_under_cmd_exes_limit():
    from collectors.ssh import windows as mapping

    assert len(mapping.command(True, 3600)) < 8191


# -- the agent itself: `vigil run` with ssh targets --------------------------------------------

def scraped(agent, name: str, **labels: str) -> float | None:
    """The value of one exported sample, or None."""
    want = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in agent.metrics().splitlines():
        if line.startswith(name + "{"):
            sample_labels, value = line[len(name) + 1:].rsplit("} ", 1)
            if all(f'{key}="{value}"' in sample_labels for key, value in labels.items()) or not want:
                return float(value)
    return None


def test_the_agent_runs_ssh_targets_a_hung_one_holds_up_no_other_and_a_restarted_one_recovers(
        make_server, write_config, start_agent):
    """The inventory runs on its own slower interval and is re-emitted between its runs; a server
    whose sshd restarts is polled again without restarting vigil."""
    from tests.lab.harness import wait_until

    good, _ = make_server("good")
    hung, mode = make_server("hung")
    mode.write_text("hang")

    def target(server, name, **extra):
        fields = {**ssh_target(server, name=name), **extra}
        return "  - {" + ", ".join(f"{key}: {value}" for key, value in fields.items()) + "}\n"

    config = write_config("listen: 127.0.0.1:{port}\nstate_dir: {state}\ntargets:\n"
                          + target(good, "good", interval="2s", timeout="1900ms", updates_every="1h")
                          + target(hung, "hung", interval="1s", timeout="900ms", command_timeout="5s"))
    agent = start_agent(config)
    try:
        wait_until(lambda: scraped(agent, "vigil_up", target="good") == 1 and
                   scraped(agent, "vigil_up", target="hung") == 0, 30, "good up and hung down")
    except BaseException:
        print(agent.metrics(), agent.peer.output()[-3000:])
        raise
    # (a busy machine may fail the first inventory within the run's timeout: it is then due again)
    wait_until(lambda: scraped(agent, "vigil_server_updates_pending", target="good", type="security") == 1, 30,
               "the inventory")
    inventory_time = scraped(agent, "vigil_collect_signal_timestamp_seconds", target="good", signal="inventory")
    first = scraped(agent, "vigil_api_requests_total", target="good", api="exec", code="0")
    wait_until(lambda: (scraped(agent, "vigil_api_requests_total", target="good", api="exec", code="0") or 0)
               >= first + 2, 30, "two more polls of the good server")
    # the inventory did not run again, and its samples are still exported, with their time
    assert scraped(agent, "vigil_server_updates_pending", target="good", type="security") == 1
    assert scraped(agent, "vigil_collect_signal_success", target="good", signal="inventory") == 1
    assert scraped(agent, "vigil_collect_signal_timestamp_seconds", target="good", signal="inventory") == inventory_time
    assert scraped(agent, "vigil_collect_signal_timestamp_seconds", target="good", signal="main") > inventory_time
    status = agent.get("/status.json")[1].decode()
    assert "did not finish within" in status or "timed out" in status.lower() or "timeout" in status.lower()
    # sshd dies and comes back: the agent reconnects by itself
    good.kill()
    wait_until(lambda: scraped(agent, "vigil_up", target="good") == 0, 30, "good to be down")
    wait_until(lambda: "connection refused" in agent.get("/status.json")[1].decode(), 30, "the reason")
    again = good.start_again(good.key_file.parent / "sshd-again.log")
    try:
        wait_until(lambda: scraped(agent, "vigil_up", target="good") == 1, 30, "good to be back")
    finally:
        again.stop()
