"""The monitoring host itself, read with psutil: the `vigil_server_*` families.

Kept small on purpose (it is not node_exporter): the figures a small team alerts on
and graphs. Pseudo and read-only image filesystems are skipped, as are loopback and
virtual interfaces by default, so labels stay bounded.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from typing import Literal

import psutil

from agent.model import Sample
from agent.schema import TargetConfig
from collectors import server_metrics as m

log = logging.getLogger(__name__)

# Read-only images and overlays that always look full: never worth an alert.
IGNORED_FSTYPES = frozenset({"squashfs", "iso9660", "udf", "erofs", "overlay", "tmpfs", "devtmpfs"})
SYSTEMD_RUNTIME = Path("/run/systemd/system")  # exists only when systemd is PID 1
REBOOT_REQUIRED_FILE = Path("/run/reboot-required")
DEBIAN_VERSION_FILE = Path("/etc/debian_version")
DMI = Path("/sys/class/dmi/id")


class HostCollector:
    kind = "host"

    class Config(TargetConfig):
        kind: Literal["host"]
        exclude_mountpoints: tuple[str, ...] = ()
        exclude_interfaces: tuple[str, ...] = ("lo", "veth*", "docker*", "br-*")

    METRICS = (
        m.CPU_SECONDS, m.CPUS, m.LOAD1, m.LOAD5, m.LOAD15,
        m.MEMORY_TOTAL, m.MEMORY_AVAILABLE, m.SWAP_TOTAL, m.SWAP_FREE,
        m.FILESYSTEM_SIZE, m.FILESYSTEM_FREE, m.FILESYSTEM_AVAIL,
        m.DISK_READ, m.DISK_WRITTEN, m.DISK_IO_TIME,
        m.NET_RECEIVE, m.NET_TRANSMIT, m.NET_RECEIVE_ERRORS, m.NET_TRANSMIT_ERRORS,
        m.BOOT_TIME, m.SYSTEMD_FAILED_UNITS, m.REBOOT_REQUIRED, m.INFO,
    )

    def __init__(self, config: Config, context: object = None):
        self.config = config  # the host needs nothing from the agent's context

    def collect(self) -> list[Sample]:
        """Blocking (psutil reads /proc), so the scheduler runs it in its thread pool."""
        samples = [*_cpu(), *_memory(), *self._filesystems(), *_disks(), *self._networks()]
        samples.append(Sample(m.BOOT_TIME.name, psutil.boot_time()))
        samples.append(Sample(m.INFO.name, 1, _info()))
        if (failed := _systemd_failed_units()) is not None:
            samples.append(Sample(m.SYSTEMD_FAILED_UNITS.name, failed))
        if DEBIAN_VERSION_FILE.exists():
            samples.append(Sample(m.REBOOT_REQUIRED.name, int(REBOOT_REQUIRED_FILE.exists())))
        return samples

    def _filesystems(self) -> list[Sample]:
        """One series set per filesystem: bind mounts of one already seen (systemd's sandbox
        makes several) would repeat its figures and its alerts."""
        samples = []
        devices = set()
        for part in psutil.disk_partitions(all=False):
            if part.fstype in IGNORED_FSTYPES or _matches(part.mountpoint, self.config.exclude_mountpoints):
                continue
            if part.device in devices:
                continue
            devices.add(part.device)
            try:
                usage = os.statvfs(part.mountpoint)
            except OSError as exc:  # a stale NFS mount or a vanished USB disk
                log.warning("filesystem skipped mountpoint=%s error=%s", part.mountpoint, exc.strerror)
                continue
            labels = {"mountpoint": part.mountpoint, "fstype": part.fstype}
            samples += [
                Sample(m.FILESYSTEM_SIZE.name, usage.f_blocks * usage.f_frsize, labels),
                Sample(m.FILESYSTEM_FREE.name, usage.f_bfree * usage.f_frsize, labels),
                Sample(m.FILESYSTEM_AVAIL.name, usage.f_bavail * usage.f_frsize, labels),
            ]
        return samples

    def _networks(self) -> list[Sample]:
        samples = []
        for nic, io in psutil.net_io_counters(pernic=True).items():
            if _matches(nic, self.config.exclude_interfaces):
                continue
            labels = {"device": nic}
            samples += [
                Sample(m.NET_RECEIVE.name, io.bytes_recv, labels),
                Sample(m.NET_TRANSMIT.name, io.bytes_sent, labels),
                Sample(m.NET_RECEIVE_ERRORS.name, io.errin, labels),
                Sample(m.NET_TRANSMIT_ERRORS.name, io.errout, labels),
            ]
        return samples


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch(name, pattern) for pattern in patterns)


def _cpu() -> list[Sample]:
    times = psutil.cpu_times()._asdict()
    # guest time is already counted in user and nice on Linux
    modes = {mode: seconds for mode, seconds in times.items() if not mode.startswith("guest")}
    load1, load5, load15 = psutil.getloadavg()
    return [
        *(Sample(m.CPU_SECONDS.name, seconds, {"mode": mode}) for mode, seconds in modes.items()),
        Sample(m.CPUS.name, psutil.cpu_count() or 0),
        Sample(m.LOAD1.name, load1), Sample(m.LOAD5.name, load5), Sample(m.LOAD15.name, load15),
    ]


def _memory() -> list[Sample]:
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    return [
        Sample(m.MEMORY_TOTAL.name, memory.total),
        Sample(m.MEMORY_AVAILABLE.name, memory.available),
        Sample(m.SWAP_TOTAL.name, swap.total),
        Sample(m.SWAP_FREE.name, swap.free),
    ]


def _disks() -> list[Sample]:
    """Whole block devices only: partitions would count the same I/O twice."""
    try:
        whole_devices = set(os.listdir("/sys/block"))
    except OSError:
        whole_devices = None
    samples = []
    for device, io in (psutil.disk_io_counters(perdisk=True) or {}).items():
        if device.startswith(("loop", "ram")) or (whole_devices is not None and device not in whole_devices):
            continue
        labels = {"device": device}
        samples += [
            Sample(m.DISK_READ.name, io.read_bytes, labels),
            Sample(m.DISK_WRITTEN.name, io.write_bytes, labels),
            Sample(m.DISK_IO_TIME.name, getattr(io, "busy_time", 0) / 1000, labels),
        ]
    return samples


def _info() -> dict[str, str]:
    try:
        version = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        version = platform.release()
    return {
        "os": platform.system().lower(),
        "version": version,
        "vendor": _dmi("sys_vendor"),
        "model": _dmi("product_name"),
        "serial": _dmi("product_serial"),  # readable by root only
    }


def _dmi(field: str) -> str:
    try:
        return (DMI / field).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _systemd_failed_units() -> int | None:
    """Failed units, or None when this host does not run systemd or cannot be asked."""
    systemctl = shutil.which("systemctl")
    if not SYSTEMD_RUNTIME.is_dir() or systemctl is None:
        return None
    try:
        listing = subprocess.run(
            [systemctl, "list-units", "--state=failed", "--no-legend", "--plain", "--no-pager"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("systemd failed units unknown error=%s", exc)
        return None
    return sum(1 for line in listing.splitlines() if line.strip())
