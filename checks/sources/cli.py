"""Running a backup tool's command line: a timeout always, and one clear line on failure.

The tool runs in its own process group (agent.children), so a timeout or the agent's
stop ends it together with the ssh it may have started.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

from agent import children
from agent.units import MAX_SIZE, format_duration

# what ssh printed, as restic (`subprocess ssh: ...`) and borg (`Remote: ...`) pass it on
_SSH_LINE = re.compile(r"(?:subprocess ssh|Remote): (?:ssh: )?(?P<text>.+)")
_S3_REFUSALS = ("The AWS Access Key Id you provided does not exist", "The request signature we calculated does not "
                "match", "InvalidAccessKeyId", "SignatureDoesNotMatch")
_SSH_ENDED = ("unable to start the sftp session", "Connection closed by remote host")  # restic, borg
_SSH_FIXES = (  # the first that matches says what to do
    ("Could not resolve hostname", "check the host name"),
    ("Connection refused", "check the host and port, and that sshd runs"),
    ("during banner exchange", "no SSH banner came: is this an SSH server?"),
    ("timed out", "check that the host is up and the port is not filtered"),
    ("No route to host", "check that the host is up and the port is not filtered"),
    ("Host key verification failed", "the server's key is not the one in known_hosts: check it, then update "
                                     "known_hosts (ssh-keyscan)"),
    ("Permission denied", "the server refused the key: check that key_file is authorized for this user"),
)


class ToolError(Exception):
    """A tool failed; the message is its last error line, never its environment."""


def run(argv: list[str], env: dict[str, str], timeout: float, ok_codes: tuple[int, ...] = (0,), *,
        what: str, where: str) -> subprocess.CompletedProcess:
    """Run a tool with `env` and the basics of the agent's environment (agent.children); raise ToolError when
    it fails.

    `what` names the command (`restic check`) and `where` the repository, for the messages.
    """
    tool = Path(argv[0]).name
    try:
        done = children.run(argv, env, timeout)
    except children.Stopping as exc:
        raise ToolError(str(exc)) from None
    except FileNotFoundError:
        raise ToolError(f"{tool} is not installed (looked for {argv[0]})") from None
    except OSError as exc:
        raise ToolError(f"{tool} cannot be started ({argv[0]}): {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{what} timed out after {format_duration(timeout)} on {where}") from None
    except children.OutputTooLarge as exc:
        raise ToolError(f"{what} {exc} and was stopped on {where}; is {argv[0]} the real {tool}?") from None
    if done.returncode not in ok_codes:
        if ssh := ssh_failure(done.stderr):
            raise ToolError(f"{what} on {where}: ssh: {ssh}")
        if refused := s3_refusal(done.stderr):
            raise ToolError(f"{what} on {where}: the S3 server refused the credentials ({refused}); check "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY under `env:`")
        raise ToolError(f"{tool}: {fatal_line(done.stderr) or f'exit status {done.returncode}'}")
    return done


def fatal_line(text: str) -> str:
    """restic's `Fatal:` line, which its hints follow (the last line may be only the URL), else the last."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("Fatal:")), lines[-1] if lines else "")


def s3_refusal(stderr: str) -> str:
    """The S3 server's words when it refused the access key or its secret; "" otherwise."""
    for words in _S3_REFUSALS:
        if words in stderr:
            return words.rstrip(".")
    return ""


def ssh_failure(stderr: str) -> str:
    """What ssh said when it could not connect for the tool, with the likely fix; "" if it said nothing.

    restic then reports only "unable to start the sftp session, error: EOF", borg
    "Connection closed by remote host".
    """
    said = [match["text"].strip() for line in stderr.splitlines() if (match := _SSH_LINE.fullmatch(line.strip()))]
    for words, fix in _SSH_FIXES:
        if found := next((text for text in said if words in text), None):
            return f"{found.rstrip('.')}; {fix}"
    if any(words in stderr for words in _SSH_ENDED):  # restic may exit before it passes on what ssh said
        return "the connection ended before a session started; check the host and port, key_file and known_hosts"
    return ""


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


def size_or_none(value: object) -> int | None:
    """A listed size the state database can store; None (unknown) for a negative one or 2^63 and more,
    which a hostile or broken server can send (SFTP and S3 sizes are unsigned 64-bit)."""
    try:
        return count(value)
    except ValueError:
        return None
