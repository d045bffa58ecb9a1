"""Reasons for people (agent.reasons): vigil's own errors by their text, a system error in plain
words, a library's with its short type; one line, redacted, cut after a whole word with an ellipsis."""

from __future__ import annotations

import pytest

from agent import redact
from agent.net.ssh import SshError
from agent.reasons import ELLIPSIS, LIMIT, describe, shorten
from checks.sources.filelike import LocationError


@pytest.mark.parametrize("exc, reason", [
    (SshError("ssh vigil@nas:22: connection refused; check the host and port"),
     "ssh vigil@nas:22: connection refused; check the host and port"),
    (LocationError("sftp://vigil@nas:22: cannot connect: Name or service not known\n  detail"),
     "sftp://vigil@nas:22: cannot connect: Name or service not known"),
    (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4)"), "Connection refused"),
    (FileNotFoundError(2, "No such file or directory", "/srv/dumps"), "No such file or directory: /srv/dumps"),
    (KeyError("serial"), "KeyError: 'serial'"),
    (ValueError("invalid literal for int() with base 10: '1.5'"), "invalid literal for int() with base 10: '1.5'"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
     "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    (TimeoutError(), "timed out"),
    (EOFError(), "EOFError"),
])
def test_a_reason_names_what_happened_without_vigil_s_class_names(exc, reason):
    assert describe(exc) == reason


def test_a_long_reason_is_cut_after_a_whole_word_with_an_ellipsis():
    words = "the repository answered with something long " * 20
    reason = describe(LocationError(words))
    assert len(reason) <= LIMIT and reason.endswith(ELLIPSIS)
    kept = reason.removesuffix(ELLIPSIS)
    assert words.startswith(kept) and words[len(kept)] == " ", reason
    assert shorten("x" * 500, 100) == "x" * 99 + ELLIPSIS  # one word longer than the room is cut inside
    assert shorten("short", 100) == "short"


def test_a_secret_where_the_cut_falls_is_masked_whole_never_half_shown(monkeypatch):
    monkeypatch.setenv("TEST_REASON_SECRET", "Sup3rS3cretPassw0rd")
    from agent.secrets import resolve_reference

    resolve_reference("${env:TEST_REASON_SECRET}")
    text = "a" * (LIMIT - len("RuntimeError: ") - 8) + " Sup3rS3cretPassw0rd and more"  # it straddles the limit
    reason = describe(RuntimeError(text))
    assert "Sup3r" not in reason and len(reason) <= LIMIT, reason
    assert redact.MASK in reason or reason.endswith(ELLIPSIS)
