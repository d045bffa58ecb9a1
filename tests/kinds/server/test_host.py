"""The host collector against this very machine, plus systemd and reboot fixtures."""

from __future__ import annotations

import os
import time

import pytest

from collectors.server import collector as host
from tests import collector_kit


@pytest.fixture
def collect(context):
    def collect(**config):
        return collector_kit.collect({"name": "me", "kind": "host", **config}, context)
    return collect


def values(out, name):
    return collector_kit.values(out, name)


def test_reads_this_machine(collect):
    samples = collect()
    cpu = values(samples, "vigil_server_cpu_seconds_total")
    assert {(("mode", m),) for m in ("user", "system", "idle")} <= set(cpu)
    assert not any(mode.startswith("guest") for ((_, mode),) in cpu)
    assert values(samples, "vigil_server_memory_total_bytes")[()] > values(
        samples, "vigil_server_memory_available_bytes")[()] > 0
    root = values(samples, "vigil_server_filesystem_size_bytes")
    assert any(dict(labels)["mountpoint"] == "/" and size > 0 for labels, size in root.items())
    assert 0 < values(samples, "vigil_server_boot_time_timestamp_seconds")[()] < time.time()
    assert values(samples, "vigil_server_cpus")[()] == os.cpu_count()
    assert all(dict(labels)["device"] != "lo"
               for labels in values(samples, "vigil_server_network_receive_bytes_total"))


def test_excluded_mountpoints_and_interfaces_are_left_out(collect):
    samples = collect(exclude_mountpoints=["/"], exclude_interfaces=["*"])
    assert "/" not in {dict(labels)["mountpoint"] for labels in values(samples, "vigil_server_filesystem_size_bytes")}
    assert not values(samples, "vigil_server_network_receive_bytes_total")


def test_failed_units_and_pending_reboot_on_a_systemd_debian_host(systemd_host, collect):
    samples = collect()
    assert values(samples, "vigil_server_systemd_failed_units") == {(): 2}
    assert values(samples, "vigil_server_reboot_required") == {(): 1}
    assert values(samples, "vigil_server_time_synchronized") == {(): 0}


def test_inodes_and_the_read_only_flag_of_this_machine(collect):
    samples = collect()
    root = os.statvfs("/")
    labels = next(labels for labels in values(samples, "vigil_server_filesystem_files")
                  if dict(labels)["mountpoint"] == "/")
    assert values(samples, "vigil_server_filesystem_files")[labels] == root.f_files
    assert values(samples, "vigil_server_filesystem_readonly")[labels] == int(bool(root.f_flag & os.ST_RDONLY))


def test_no_systemd_means_no_failed_units_metric(tmp_path, monkeypatch, collect):
    monkeypatch.setattr(host, "SYSTEMD_RUNTIME", tmp_path / "absent")
    assert not values(collect(), "vigil_server_systemd_failed_units")


def test_a_bind_mount_is_not_a_second_filesystem(tmp_path):
    """As under systemd's sandbox: the same disk mounted twice is reported once."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.lab.harness import need

    unshare = need("unshare")
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to bind-mount in a private mount namespace")
    (tmp_path / "source").mkdir()
    (tmp_path / "bound").mkdir()
    script = ("from agent.collector import Emitter; from collectors.server.collector import HostCollector as H;"
              "out = Emitter(H.METRICS); H(H.Config(name='m', kind='host'), None).collect(out, frozenset());"
              "print(sorted(x.labels['mountpoint'] for x in out.samples()"
              " if x.name == 'vigil_server_filesystem_size_bytes'))")
    done = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c",
                           f"mount --bind {tmp_path}/source {tmp_path}/bound && {sys.executable} -c \"{script}\""],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip("this machine does not allow mount namespaces")
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "bound") not in done.stdout and "'/'" in done.stdout
