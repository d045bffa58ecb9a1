"""One redaction for every free text: error texts, details, log lines.

Credentials reach error texts by routes no single call site controls: a tool echoes its
repository URL, urllib3 logs a pre-signed query string under --debug, an SDK puts the
endpoint in an exception. So a free text is cleaned where it becomes a record (an
exception described, a reason or verdict handed to the Emitter, a detail written to the
history) and where a log line is written, by patterns (passwords in URL userinfo,
signature and token query values, Authorization headers) and by value: every secret the
config resolves is registered here (agent.secrets), in every form a text gives it (URL-encoded,
escaped by repr or JSON, and a multi-line secret line by line).

Names and label values are never redacted: they are not free text. Inside a free text a
configured name is kept whole too (`office-monitor: connection refused` stays so when the
restic password is `office`), while the secret is masked wherever else it shows: an
occurrence of a secret is kept only when it lies wholly inside an occurrence of a name.
`vigil check-config` warns of a name that holds a secret.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

MASK = "***"
MIN_SECRET = 4  # shorter values would mask ordinary words; such a secret is no secret anyway

# scheme://user:password@ (also inside `s3:http://id:key@host`); the password may hold an
# unencoded `@`, so it runs to the last `@` before the path
_USERINFO = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s/:@'\"]*):[^\s/'\"]*@", re.I)
_QUERY_VALUE = re.compile(
    r"(?P<head>(?<![\w-])(?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"password|passwd|pwd|token|access_token|refresh_token|id_token|client_secret|api_key|apikey|"
    r"passphrase)=)[^&\s'\",;#\\]+", re.I)
_SIGNATURE_LINE = re.compile(r"(?P<head>\bsignature:\s*)[0-9a-f]{16,}", re.I)  # botocore.auth's debug line
_ANY_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/]*@", re.I)
# an Authorization header as http.client, urllib3 or botocore print it, and a bearer token anywhere
_AUTHORIZATION = re.compile(r"(?P<head>authorization['\"]?\s*[:=]\s*(?:b?['\"])?"
                            r"(?:(?:basic|bearer|digest|negotiate|aws4-hmac-sha256)\s+)?)[^\s'\",\\]+", re.I)
_BEARER = re.compile(r"(?P<head>\bbearer\s+)[a-z0-9._~+/-]{16,}=*", re.I)


@dataclass(frozen=True)
class _Masks:
    """The registered secrets (with their URL-encoded forms) and the configured names, with the
    patterns that find them at every position: one value swapped whole, read without a lock."""

    secrets: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    known: re.Pattern[str] | None = None  # the longest secret starting at each position
    shelters: re.Pattern[str] | None = None  # the longest name holding a secret, at each position

    def adding(self, secrets: Iterable[str] = (), names: Iterable[str] = ()) -> _Masks:
        secrets, names = self.secrets | set(secrets), self.names | set(names)
        holding = [name for name in names if any(secret in name for secret in secrets)]
        return _Masks(frozenset(secrets), frozenset(names), _anywhere(secrets), _anywhere(holding))


def _anywhere(texts: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern matching, at every position, the longest of the texts that starts there."""
    alternatives = sorted(texts, key=len, reverse=True)
    return re.compile(f"(?=({'|'.join(map(re.escape, alternatives))}))") if alternatives else None


_lock = threading.Lock()
_masks = _Masks()


def register(secret: str) -> None:
    """Mask this value wherever it appears from now on, in every form a text gives it (`forms`)."""
    global _masks
    if len(secret) < MIN_SECRET:
        return
    with _lock:
        _masks = _masks.adding(secrets=forms(secret))


def forms(secret: str) -> set[str]:
    """Every form the secret takes in a text: as it is; URL-encoded; inside Python's repr of it as text or as
    UTF-8 bytes (a ' in it escaped or not, as the quotes around it decide); inside JSON (\\u-escaped or not).
    And each line of a multi-line secret in all these forms, for a tool that prints one line at a time.
    Forms too short to be secret are left out."""
    lines = secret.splitlines()
    found: set[str] = set()
    for text in [secret, *(lines if len(lines) > 1 else ())]:
        data = text.encode()
        found |= {text, quote(text, safe=""), repr(text)[1:-1], repr(text + '"')[1:-2], repr(data)[2:-1],
                  repr(data + b'"')[2:-2], json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    return {form for form in found if len(form) >= MIN_SECRET}


def keep(names: Iterable[str]) -> None:
    """Never mask these configured names (targets, backup jobs) in a free text, even where a secret
    is part of one. Names accumulate: a line about a job of the previous config keeps its name too."""
    global _masks
    with _lock:
        _masks = _masks.adding(names=names)


def registered(value: str) -> bool:
    """True when this value is masked as a secret."""
    return value in _masks.secrets


def redact(text: str) -> str:
    """The free text with every credential it holds replaced by ***, configured names left whole."""
    text = _mask_secrets(text, _masks)
    text = _USERINFO.sub(rf"\g<head>:{MASK}@", text)
    text = _QUERY_VALUE.sub(rf"\g<head>{MASK}", text)
    text = _SIGNATURE_LINE.sub(rf"\g<head>{MASK}", text)
    text = _AUTHORIZATION.sub(rf"\g<head>{MASK}", text)
    return _BEARER.sub(rf"\g<head>{MASK}", text)


def _mask_secrets(text: str, masks: _Masks) -> str:
    if masks.known is None:
        return text
    spans = _spans(masks.known, text)
    if spans and masks.shelters is not None:
        names = _spans(masks.shelters, text)
        spans = [(start, end) for start, end in spans
                 if not any(first <= start and end <= last for first, last in names)]
    pieces, done = [], 0
    for start, end in spans:  # by start; overlapping occurrences become one mask
        if start < done:
            if end > done:
                done = end
            continue
        pieces += [text[done:start], MASK]
        done = end
    return "".join(pieces) + text[done:]


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [(match.start(), match.start() + len(match.group(1))) for match in pattern.finditer(text)]


def password_in_url(text: str) -> bool:
    """True when a URL in the text carries a password (`scheme://user:password@`)."""
    return bool(_USERINFO.search(text))


def userinfo_in_url(text: str) -> bool:
    """True when a URL in the text carries any userinfo (`scheme://user@`, `scheme://id:key@`)."""
    return bool(_ANY_USERINFO.search(text))


class RedactingFilter(logging.Filter):
    """Put on a handler: the record's message, arguments and traceback, redacted."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
