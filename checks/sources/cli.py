"""Running a backup tool's command line: a timeout always, and one clear line on failure.

The tool runs in its own process group (agent.children), so a timeout or the agent's
stop ends it together with the ssh it may have started.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from agent import children
from agent.units import MAX_SIZE, format_duration
from checks.model import Candidate, DrillDamage, DrillNotRun, Sink

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
    except _NOT_RUN as exc:
        raise ToolError(not_run(exc, argv, timeout, what=what, where=where)) from None
    if done.returncode not in ok_codes:
        raise ToolError(unreachable(done.stderr, what=what, where=where)
                        or f"{tool}: {fatal_line(done.stderr) or f'exit status {done.returncode}'}")
    return done


_NOT_RUN = (children.Stopping, children.Cancelled, OSError, subprocess.TimeoutExpired, children.OutputTooLarge)


def not_run(exc: Exception, argv: list[str], timeout: float, *, what: str, where: str) -> str:
    """Why a tool did not run to its end (one of _NOT_RUN), in one line naming the command and repository."""
    tool = Path(argv[0]).name
    if isinstance(exc, children.Cancelled):
        return f"{what} on {where} was cancelled"
    if isinstance(exc, FileNotFoundError):
        return f"{tool} is not installed (looked for {argv[0]})"
    if isinstance(exc, OSError):
        return f"{tool} cannot be started ({argv[0]}): {exc.strerror}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{what} timed out after {format_duration(timeout)} on {where}"
    if isinstance(exc, children.OutputTooLarge):
        return f"{what} {exc} and was stopped on {where}; is {argv[0]} the real {tool}?"
    return str(exc)  # Stopping


def unreachable(stderr: str, *, what: str, where: str) -> str:
    """Why the tool could not reach the repository (ssh, the S3 server's refusal), with the fix; "" if not that."""
    if ssh := ssh_failure(stderr):
        return f"{what} on {where}: ssh: {ssh}"
    if refused := s3_refusal(stderr):
        return (f"{what} on {where}: the S3 server refused the credentials ({refused}); check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY under `env:`")
    return ""


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


# Restore drills: a file streamed out of a backup by the tool, and its failure told apart, damage or not.

MAX_LINE = 1 << 20  # the longest JSON line a listing may write (a path is at most 4 KiB on Linux)


def restore(argv: list[str], env: dict[str, str], timeout: float, candidate: Candidate, sink: Sink,
            cancel: threading.Event, *, what: str, where: str,
            damage: Callable[[subprocess.CalledProcessError], str], busy: Callable[[str], str] = lambda _: "",
            give_up: Callable[[str], bool] | None = None) -> None:
    """Stream the tool's output of `candidate` into `sink` (agent.children.stream; the drill's Digest counts
    the bytes against the listing).

    DrillDamage when `damage(failure)` names an integrity error (the tool's line); DrillNotRun for everything
    else: `busy(stderr)` names a lock, else ssh, S3's refusal, a timeout, a cancel, the tool's last line.
    """
    try:
        children.stream(argv, env, timeout, sink, cancel=cancel, give_up=give_up)
    except _NOT_RUN as exc:
        raise DrillNotRun(not_run(exc, argv, timeout, what=what, where=where)) from None
    except subprocess.CalledProcessError as failed:
        if found := damage(failed):
            raise DrillDamage(f"{candidate.path}: {what}: {found}") from None
        if locked := busy(failed.stderr):
            raise DrillNotRun(f"{what} found {where} locked (a backup or prune may be running; retried "
                              f"later): {locked}") from None
        raise DrillNotRun(unreachable(failed.stderr, what=what, where=where) or f"{what} of {candidate.path} "
                          f"failed: {fatal_line(failed.stderr) or f'exit status {failed.returncode}'}") from None


def json_lines(argv: list[str], env: dict[str, str], timeout: float, *, what: str, where: str) -> Iterator[dict]:
    """A tool's JSON lines as they arrive (a listing of millions of files in constant memory); DrillNotRun
    when the tool fails or writes anything else. Closing the iterator early kills the tool."""
    rest = b""
    try:
        with closing(children.chunks(argv, env, timeout)) as output:
            for data in output:
                *lines, rest = (rest + data).split(b"\n")
                if len(rest) > MAX_LINE:
                    raise DrillNotRun(f"{what} on {where}: a line longer than {MAX_LINE >> 20} MiB")
                yield from (_json_object(line, what) for line in lines if line.strip())
    except _NOT_RUN as exc:
        raise DrillNotRun(not_run(exc, argv, timeout, what=what, where=where)) from None
    except subprocess.CalledProcessError as failed:
        raise DrillNotRun(unreachable(failed.stderr, what=what, where=where)
                          or f"{what} on {where} failed: {fatal_line(failed.stderr) or failed.returncode}") from None
    if rest.strip():
        yield _json_object(rest, what)


def _json_object(line: bytes, what: str) -> dict:
    try:
        entry = json.loads(line)
    except ValueError:
        raise DrillNotRun(f"{what}: the output is not JSON lines") from None
    if not isinstance(entry, dict):
        raise DrillNotRun(f"{what}: a JSON line that is not an object")
    return entry


def timestamp(value: object) -> float | None:
    """A listed file's time (ISO 8601, as restic and borg write them; borg's without a zone is UTC)."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
