"""Running a backup tool's command line: a timeout always, and one clear line on failure.

The tool runs in its own process group (agent.children), so a timeout or the agent's
stop ends it together with the ssh it may have started.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

from agent import children
from agent.units import MAX_SIZE


class ToolError(Exception):
    """A tool failed; the message is its last error line, never its environment."""


def run(argv: list[str], env: dict[str, str], timeout: float, ok_codes: tuple[int, ...] = (0,)
        ) -> subprocess.CompletedProcess:
    """Run a tool with the agent's environment plus `env`; raise ToolError when it fails."""
    tool = Path(argv[0]).name
    try:
        done = children.run(argv, {**os.environ, **env}, timeout)
    except children.Stopping as exc:
        raise ToolError(str(exc)) from None
    except FileNotFoundError:
        raise ToolError(f"{tool} is not installed (looked for {argv[0]})") from None
    except OSError as exc:
        raise ToolError(f"{tool} cannot be started ({argv[0]}): {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{tool} {argv[1] if len(argv) > 1 else ''} timed out after {timeout:g}s") from None
    except children.OutputTooLarge as exc:
        raise ToolError(f"{tool} {exc} and was stopped; is {argv[0]} the real {tool}?") from None
    if done.returncode not in ok_codes:
        raise ToolError(f"{tool}: {last_line(done.stderr) or f'exit status {done.returncode}'}")
    return done


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def ssh_command(key_file: Path | None, known_hosts: Path | None, port: int | None = None) -> list[str]:
    """ssh that never asks and never trusts an unknown host key (for restic sftp and borg)."""
    command = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20"]
    if known_hosts is not None:
        command += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
    if key_file is not None:
        command += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
    if port is not None:
        command += ["-p", str(port)]
    return command


def count(value: object) -> int:
    """A size or file count from a tool's JSON: a whole number the state database can store.

    Raises ValueError for NaN, infinity, a negative value, 2^63 or more, or a value of the
    wrong type, which the caller reports as unexpected JSON instead of recording it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SIZE \
            or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"not a size or count: {value!r:.40}")
    return int(value)


def seconds(value: object) -> float:
    """A duration from a tool's JSON: finite and not negative, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"not a duration: {value!r:.40}")
    return float(value)
