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

import psutil

from agent.children import environment
from agent.collector import Collector, Emitter
from collectors.server import metrics as m
from collectors.server.config import HostConfig

log = logging.getLogger(__name__)

# Read-only images and overlays that always look full: never worth an alert.
IGNORED_FSTYPES = frozenset({"squashfs", "iso9660", "udf", "erofs", "overlay", "tmpfs", "devtmpfs"})
SYSTEMD_RUNTIME = Path("/run/systemd/system")  # exists only when systemd is PID 1
REBOOT_REQUIRED_FILE = Path("/run/reboot-required")
DEBIAN_VERSION_FILE = Path("/etc/debian_version")
DMI = Path("/sys/class/dmi/id")


class HostCollector(Collector[HostConfig]):
    """Blocking (psutil reads /proc): the agent runs `collect` in a thread."""

    Config = HostConfig

    METRICS = m.METRICS
    CONDITIONS = m.CONDITIONS

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        _cpu(out)
        _memory(out)
        self._filesystems(out)
        _disks(out)
        self._networks(out)
        out.gauge(m.BOOT_TIME, psutil.boot_time())
        out.gauge(m.INFO, 1, **_info())
        out.gauge(m.SYSTEMD_FAILED_UNITS, _systemd_failed_units())
        out.gauge(m.TIME_SYNCHRONIZED, _time_synchronized())
        if DEBIAN_VERSION_FILE.exists():
            out.gauge(m.REBOOT_REQUIRED, int(REBOOT_REQUIRED_FILE.exists()))

    def _filesystems(self, out: Emitter) -> None:
        """One series set per filesystem: bind mounts of one already seen (systemd's sandbox
        makes several) would repeat its figures and its alerts."""
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
            out.gauge(m.FILESYSTEM_SIZE, usage.f_blocks * usage.f_frsize, **labels)
            out.gauge(m.FILESYSTEM_FREE, usage.f_bfree * usage.f_frsize, **labels)
            out.gauge(m.FILESYSTEM_AVAIL, usage.f_bavail * usage.f_frsize, **labels)
            out.gauge(m.FILESYSTEM_FILES, usage.f_files, **labels)
            out.gauge(m.FILESYSTEM_FILES_FREE, usage.f_ffree, **labels)
            out.gauge(m.FILESYSTEM_READONLY, int("ro" in part.opts.split(",")), **labels)

    def _networks(self, out: Emitter) -> None:
        for nic, io in psutil.net_io_counters(pernic=True).items():
            if _matches(nic, self.config.exclude_interfaces):
                continue
            out.counter(m.NET_RECEIVE, io.bytes_recv, device=nic)
            out.counter(m.NET_TRANSMIT, io.bytes_sent, device=nic)
            out.counter(m.NET_RECEIVE_ERRORS, io.errin, device=nic)
            out.counter(m.NET_TRANSMIT_ERRORS, io.errout, device=nic)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch(name, pattern) for pattern in patterns)


def _cpu(out: Emitter) -> None:
    for mode, seconds in psutil.cpu_times()._asdict().items():
        if not mode.startswith("guest"):  # guest time is already counted in user and nice on Linux
            out.counter(m.CPU_SECONDS, seconds, mode=mode)
    out.gauge(m.CPUS, psutil.cpu_count() or 0)
    for spec, value in zip((m.LOAD1, m.LOAD5, m.LOAD15), psutil.getloadavg(), strict=True):
        out.gauge(spec, value)


def _memory(out: Emitter) -> None:
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    out.gauge(m.MEMORY_TOTAL, memory.total)
    out.gauge(m.MEMORY_AVAILABLE, memory.available)
    out.gauge(m.SWAP_TOTAL, swap.total)
    out.gauge(m.SWAP_FREE, swap.free)


def _disks(out: Emitter) -> None:
    """Whole block devices only: partitions would count the same I/O twice."""
    try:
        whole_devices = set(os.listdir("/sys/block"))
    except OSError:
        whole_devices = None
    for device, io in (psutil.disk_io_counters(perdisk=True) or {}).items():
        if device.startswith(("loop", "ram")) or (whole_devices is not None and device not in whole_devices):
            continue
        out.counter(m.DISK_READ, io.read_bytes, device=device)
        out.counter(m.DISK_WRITTEN, io.write_bytes, device=device)
        out.counter(m.DISK_IO_TIME, getattr(io, "busy_time", 0) / 1000, device=device)


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
        listing = subprocess.run(  # noqa: S603 — fixed argv, systemctl from PATH lookup
            [systemctl, "list-units", "--state=failed", "--no-legend", "--plain", "--no-pager"],
            capture_output=True, text=True, timeout=5, check=True, env=environment({}),
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("systemd failed units unknown error=%s", exc)
        return None
    return sum(1 for line in listing.splitlines() if line.strip())


def _time_synchronized() -> int | None:
    """timedatectl's NTPSynchronized (the kernel's flag, whichever daemon keeps time), as the ssh kind reads it."""
    timedatectl = shutil.which("timedatectl")
    if not SYSTEMD_RUNTIME.is_dir() or timedatectl is None:
        return None
    try:
        answer = subprocess.run([timedatectl, "show", "-p", "NTPSynchronized", "--value"],  # noqa: S603 — fixed argv, no shell
                                capture_output=True, text=True, timeout=5, check=True,
                                env=environment({})).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("time sync unknown error=%s", exc)
        return None
    return {"yes": 1, "no": 0}.get(answer)
