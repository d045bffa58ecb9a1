"""A Linux server's figures from the output of linux_poll.sh and linux_inventory.sh.

The scripts print raw /proc files and tool output in sections; everything is parsed
here, locally, so the server needs nothing but a POSIX shell and coreutils, and a
change of parsing never needs a change on the servers.
"""

from __future__ import annotations

import re
import shlex
from fnmatch import fnmatch
from pathlib import Path

from agent.collector import Emitter
from collectors.server import metrics as m
from collectors.ssh.output import OutputError, Sections, number

HERE = Path(__file__).parent
POLL_SCRIPT, INVENTORY_SCRIPT = "linux_poll.sh", "linux_inventory.sh"
SCRIPTS = {name: (HERE / name).read_text() for name in (POLL_SCRIPT, INVENTORY_SCRIPT)}

# Read-only images and overlays that always look full, as for the host collector.
IGNORED_FSTYPES = frozenset({"squashfs", "iso9660", "udf", "erofs", "overlay", "tmpfs", "devtmpfs"})
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")  # guest is inside user
SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size
MAX_NAMES = 10  # failed unit names exported, so that a bad day cannot explode the series count


def command(script: str, seconds: int) -> str:
    """The one exec line: the script (one of SCRIPTS) as an argument of /bin/sh, whatever the user's login
    shell, in `timeout` (coreutils, as the poll script's stat already needs), which ends the script and every
    process it started after `seconds` (and kills them 2 s later if they are still there)."""
    return f"exec timeout -k 2 {seconds} /bin/sh -c {shlex.quote(SCRIPTS[script])} </dev/null"


def emit_poll(out: Emitter, text: str, exclude_mountpoints: tuple[str, ...] = (),
              exclude_interfaces: tuple[str, ...] = ()) -> None:
    parts = Sections.parse(text)
    _cpu(out, parts)
    _memory(out, parts)
    _filesystems(out, parts, exclude_mountpoints)
    _disks(out, parts)
    _networks(out, parts, exclude_interfaces)
    if "failed_units" in parts:
        units = sorted({line.split()[0] for line in parts.lines("failed_units") if line.strip()})
        out.gauge(m.SYSTEMD_FAILED_UNITS, len(units))
        for unit in units[:MAX_NAMES]:
            out.gauge(m.SYSTEMD_FAILED_UNIT, 1, unit=unit)
    if "reboot_required" in parts:
        out.gauge(m.REBOOT_REQUIRED, int(parts.text("reboot_required") == "yes"))
    out.gauge(m.TIME_SYNCHRONIZED, _time_synchronized(parts))


def emit_inventory(out: Emitter, text: str) -> None:
    parts = Sections.parse(text)
    release = _assignments(parts.lines("os_release"))
    dmi = _assignments(parts.lines("dmi"))
    kernel = parts.text("kernel").split()
    out.gauge(m.INFO, 1, os=(kernel[0] if kernel else "linux").lower(),
              version=release.get("PRETTY_NAME") or release.get("NAME", ""),
              vendor=dmi.get("sys_vendor", ""), model=dmi.get("product_name", ""),
              serial=dmi.get("product_serial", ""))
    if len(kernel) > 1:
        out.gauge(m.KERNEL_INFO, 1, release=kernel[1])
    if "apt" in parts:
        # pkg/suite,suite version arch [upgradable from: old]: every suite that has the new version
        upgrades = [line.split()[0] for line in parts.lines("apt") if "[upgradable from:" in line]
        out.gauge(m.UPDATES_PENDING, len(upgrades), type="all")
        out.gauge(m.UPDATES_PENDING, sum("-security" in line.partition("/")[2] for line in upgrades),
                  type="security")
    elif "rpm_updates" in parts:
        out.gauge(m.UPDATES_PENDING, _rpm_count(parts, "rpm_updates", ok=(0, 100)), type="all")
        out.gauge(m.UPDATES_PENDING, _rpm_count(parts, "rpm_security", ok=(0,)), type="security")


def _cpu(out: Emitter, parts: Sections) -> None:
    tick = number(parts.text("clk_tck") or "100", "clk_tck")
    if tick <= 0:
        raise OutputError(f"clk_tck: expected a positive tick rate, got {parts.text('clk_tck')[:20]!r}")
    cpus = 0
    for line in parts.lines("stat"):
        fields = line.split()
        if fields and fields[0] == "cpu":
            for mode, value in zip(CPU_MODES, fields[1:], strict=False):
                out.counter(m.CPU_SECONDS, number(value, "stat") / tick, mode=mode)
        elif fields and fields[0].startswith("cpu"):
            cpus += 1
        elif fields[:1] == ["btime"]:
            out.gauge(m.BOOT_TIME, number(fields[1] if len(fields) > 1 else "", "stat btime"))
    out.gauge(m.CPUS, cpus)
    load = parts.text("loadavg").split()
    if len(load) < 3:
        raise OutputError(f"loadavg: expected three load averages, got {parts.text('loadavg')[:60]!r}")
    for spec, value in zip((m.LOAD1, m.LOAD5, m.LOAD15), load, strict=False):
        out.gauge(spec, number(value, "loadavg"))


def _memory(out: Emitter, parts: Sections) -> None:
    meminfo = {}
    for line in parts.lines("meminfo"):
        key, _, rest = line.partition(":")
        if rest.split():
            meminfo[key] = number(rest.split()[0], "meminfo") * 1024
    for spec, key in ((m.MEMORY_TOTAL, "MemTotal"), (m.MEMORY_AVAILABLE, "MemAvailable"),
                      (m.SWAP_TOTAL, "SwapTotal"), (m.SWAP_FREE, "SwapFree")):
        if key not in meminfo:
            raise OutputError(f"meminfo: no {key} line")
        out.gauge(spec, meminfo[key])


def _filesystems(out: Emitter, parts: Sections, exclude: tuple[str, ...]) -> None:
    """One series set per filesystem: bind mounts of one already seen are left out."""
    mounts: dict[str, tuple[str, str, bool]] = {}  # mountpoint -> (device, fstype, read-only)
    for line in parts.lines("mounts"):
        fields = line.split()
        if len(fields) >= 4:
            mountpoint = _unescape(fields[1])
            mounts[mountpoint] = (fields[0], fields[2], "ro" in fields[3].split(","))
    devices = set()
    for line in parts.lines("statfs"):
        fields = line.split(" ", 6)
        if len(fields) < 7:
            raise OutputError(f"statfs: expected 7 fields, got {line[:60]!r}")
        mountpoint = fields[6]
        if mountpoint not in mounts:
            continue
        device, fstype, readonly = mounts[mountpoint]
        if fstype in IGNORED_FSTYPES or device in devices or any(fnmatch(mountpoint, p) for p in exclude):
            continue
        devices.add(device)
        blocks, free, avail, size, files, files_free = (number(value, "statfs") for value in fields[:6])
        labels = {"mountpoint": mountpoint, "fstype": fstype}
        out.gauge(m.FILESYSTEM_SIZE, blocks * size, **labels)
        out.gauge(m.FILESYSTEM_FREE, free * size, **labels)
        out.gauge(m.FILESYSTEM_AVAIL, avail * size, **labels)
        out.gauge(m.FILESYSTEM_FILES, files, **labels)
        out.gauge(m.FILESYSTEM_FILES_FREE, files_free, **labels)
        out.gauge(m.FILESYSTEM_READONLY, int(readonly), **labels)


def _disks(out: Emitter, parts: Sections) -> None:
    """Whole block devices only: partitions would count the same I/O twice."""
    whole = {line.strip() for line in parts.lines("blockdevices")}
    for line in parts.lines("diskstats"):
        fields = line.split()
        if len(fields) < 13 or fields[2] not in whole or fields[2].startswith(("loop", "ram")):
            continue
        device = fields[2]
        out.counter(m.DISK_READ, number(fields[5], "diskstats") * SECTOR, device=device)
        out.counter(m.DISK_WRITTEN, number(fields[9], "diskstats") * SECTOR, device=device)
        out.counter(m.DISK_IO_TIME, number(fields[12], "diskstats") / 1000, device=device)


def _networks(out: Emitter, parts: Sections, exclude: tuple[str, ...]) -> None:
    for line in parts.lines("netdev"):
        name, colon, rest = line.partition(":")
        fields = rest.split()
        if not colon or len(fields) < 11 or "|" in line:
            continue
        device = name.strip()
        if any(fnmatch(device, pattern) for pattern in exclude):
            continue
        out.counter(m.NET_RECEIVE, number(fields[0], "net/dev"), device=device)
        out.counter(m.NET_RECEIVE_ERRORS, number(fields[2], "net/dev"), device=device)
        out.counter(m.NET_TRANSMIT, number(fields[8], "net/dev"), device=device)
        out.counter(m.NET_TRANSMIT_ERRORS, number(fields[10], "net/dev"), device=device)


def _time_synchronized(parts: Sections) -> int | None:
    """timedatectl's NTPSynchronized (the kernel's own flag, whichever daemon sets it), else chrony's leap status."""
    if "time_synchronized" in parts:
        answer = parts.text("time_synchronized")
        return {"yes": 1, "no": 0}.get(answer)
    for line in parts.lines("chrony_tracking"):
        key, _, value = line.partition(":")
        if key.strip() == "Leap status":
            return int(value.strip() != "Not synchronised")
    return None


def _rpm_count(parts: Sections, name: str, ok: tuple[int, ...]) -> int:
    lines = [line for line in parts.lines(name) if line.strip()]
    status = lines.pop() if lines and lines[-1].startswith("exit=") else "exit=?"
    if status.removeprefix("exit=") not in {str(code) for code in ok}:
        raise OutputError(f"{name}: the package tool failed ({status}); is its cache there (run it once as root)?")
    return sum(1 for line in lines if len(line.split()) >= 3 and not line.startswith(("Obsoleting", "Last metadata")))


def _assignments(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        key, equals, value = line.partition("=")
        if equals:
            found[key.strip()] = value.strip().strip('"')
    return found


def _unescape(field: str) -> str:
    r"""/proc/mounts writes a space as \040, a tab as \011 and a backslash as \134."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)
