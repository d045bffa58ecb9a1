"""A Windows server's figures from the JSON that windows_poll.ps1 prints.

The script is sent as `powershell -NoProfile -NonInteractive -EncodedCommand` (UTF-16LE,
base64: no quoting through cmd.exe, which Windows' OpenSSH runs commands with). A
section the server cannot give (no Windows Server Backup, a refused CIM class) is absent
from the reply and its families are left out; numbers may arrive as localized strings.
"""

from __future__ import annotations

import base64
import json
from fnmatch import fnmatch
from pathlib import Path

from agent.collector import Emitter
from agent.reasons import shorten
from collectors.server import metrics as m
from collectors.ssh.output import OutputError, number

SCRIPT_NAME = "windows_poll.ps1"
SCRIPT = (Path(__file__).parent / SCRIPT_NAME).read_text()
TICKS = 1e7  # the CPU counters count 100 ns units
MAX_NAMES = 10  # stopped service names exported, so that a bad day cannot explode the series count
REQUIRED = ("cpu", "memory")


def command(inventory: bool, seconds: int) -> str:
    """The one command line, which ends itself on the server after `seconds`; comments and indentation
    are dropped to stay far below cmd.exe's 8191 characters."""
    lines = [line.strip() for line in SCRIPT.splitlines()]
    script = "\n".join([f"$Inventory = ${str(inventory).lower()}", f"$Limit = {seconds}",
                        *(line for line in lines if line and not line.startswith("#"))])
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return f"powershell -NoProfile -NonInteractive -EncodedCommand {encoded}"


def parse(text: str) -> dict:
    """The script's JSON document, or OutputError saying what came back instead."""
    start = text.find("{")
    try:
        document = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError as exc:
        raise OutputError(f"the reply is not the script's JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(document, dict) or document.get("vigil") != 1:
        raise OutputError(f"the reply is not the script's JSON (it starts {text[:60]!r}); is PowerShell the "
                          "shell, and does the account's profile print nothing?")
    errors = document.get("errors") or {}
    for name in REQUIRED:
        if not isinstance(document.get(name), dict):
            why = errors.get(name, "missing from the reply") if isinstance(errors, dict) else "missing"
            raise OutputError(f"the {name} section failed: {shorten(str(why), 200)}")
    return document


def emit_poll(out: Emitter, document: dict, ignore_services: tuple[str, ...] = (),
              exclude_volumes: tuple[str, ...] = ()) -> None:
    cpu, memory = document["cpu"], document["memory"]
    out.gauge(m.CPUS, _number(cpu.get("count"), "cpu.count"))
    for mode in ("user", "system", "idle"):
        ticks = _number(cpu.get(mode), f"cpu.{mode}")
        out.counter(m.CPU_SECONDS, None if ticks is None else ticks / TICKS, mode=mode)
    out.gauge(m.MEMORY_TOTAL, _number(memory.get("total_bytes"), "memory.total_bytes"))
    out.gauge(m.MEMORY_AVAILABLE, _number(memory.get("available_bytes"), "memory.available_bytes"))
    swap_total = _number(memory.get("swap_total_bytes"), "memory.swap_total_bytes")
    swap_used = _number(memory.get("swap_used_bytes"), "memory.swap_used_bytes")
    out.gauge(m.SWAP_TOTAL, swap_total)
    out.gauge(m.SWAP_FREE, None if swap_total is None or swap_used is None else swap_total - swap_used)
    out.gauge(m.BOOT_TIME, _number(memory.get("boot_time"), "memory.boot_time"))
    for volume in _list(document.get("volumes")):
        if not isinstance(volume, dict) or not volume.get("name") or \
                any(fnmatch(str(volume["name"]).lower(), pattern.lower()) for pattern in exclude_volumes):
            continue
        labels = {"mountpoint": str(volume["name"]), "fstype": str(volume.get("fstype") or "")}
        free = _number(volume.get("free_bytes"), "volumes.free_bytes")
        out.gauge(m.FILESYSTEM_SIZE, _number(volume.get("size_bytes"), "volumes.size_bytes"), **labels)
        out.gauge(m.FILESYSTEM_FREE, free, **labels)
        out.gauge(m.FILESYSTEM_AVAIL, free, **labels)  # no root reserve on NTFS or ReFS
    if "services" in document:
        stopped = sorted({str(name) for name in _list(document["services"])
                          if not any(fnmatch(str(name).lower(), pattern.lower()) for pattern in ignore_services)})
        out.gauge(m.WINDOWS_STOPPED_AUTO_SERVICES, len(stopped))
        for name in stopped[:MAX_NAMES]:
            out.gauge(m.WINDOWS_STOPPED_AUTO_SERVICE, 1, service=name)
    if isinstance(document.get("reboot"), bool):
        out.gauge(m.REBOOT_REQUIRED, int(document["reboot"]))
    backup = document.get("backup")
    if isinstance(backup, dict):
        out.gauge(m.WINDOWS_BACKUP_LAST_SUCCESS, _number(backup.get("last_success"), "backup.last_success"))
        result = _number(backup.get("last_result"), "backup.last_result")
        out.gauge(m.WINDOWS_BACKUP_LAST_OK, None if result is None else int(result == 0))


def emit_inventory(out: Emitter, document: dict) -> None:
    system = document.get("os")
    if not isinstance(system, dict):
        errors = document.get("errors")
        why = errors.get("os", "missing") if isinstance(errors, dict) else "missing"
        raise OutputError(f"the os section failed: {shorten(str(why), 200)}")
    version = " ".join(str(system.get(key) or "") for key in ("caption", "version")).strip()
    out.gauge(m.INFO, 1, os="windows", version=version, vendor=str(system.get("vendor") or "").strip(),
              model=str(system.get("model") or "").strip(), serial=str(system.get("serial") or "").strip())
    out.gauge(m.KERNEL_INFO, None if not system.get("version") else 1, release=str(system.get("version")))
    out.gauge(m.WINDOWS_LAST_HOTFIX, _number(document.get("hotfix"), "hotfix"))


def _number(value: object, where: str) -> float | None:
    return None if value is None or value == "" else number(value, where)


def _list(value: object) -> list:
    """ConvertTo-Json writes a one-element array as the element itself, and an empty one as null."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
