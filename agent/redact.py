"""One redaction for every text that leaves the agent: log lines, error texts, status pages.

Credentials reach error texts by routes no single call site controls: a tool echoes its
repository URL, urllib3 logs a pre-signed query string under --debug, an SDK puts the
endpoint in an exception. So the text is cleaned where it leaves, by patterns
(passwords in URL userinfo, signature and token query values, Authorization headers)
and by value: every secret the config resolves is registered here (agent.secrets).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
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

_lock = threading.Lock()
_secrets: set[str] = set()
_known: re.Pattern[str] | None = None


def register(secret: str) -> None:
    """Mask this value (and its URL-encoded form) wherever it appears from now on."""
    global _known
    if len(secret) < MIN_SECRET:
        return
    with _lock:
        forms = {secret, quote(secret, safe="")} - _secrets
        if not forms:
            return
        _secrets.update(forms)
        alternatives = sorted(_secrets, key=len, reverse=True)  # a longer secret before its prefix
        _known = re.compile("|".join(map(re.escape, alternatives)))


def redact(text: str) -> str:
    """The text with every credential it holds replaced by ***."""
    known = _known
    if known is not None:
        text = known.sub(MASK, text)
    text = _USERINFO.sub(rf"\g<head>:{MASK}@", text)
    text = _QUERY_VALUE.sub(rf"\g<head>{MASK}", text)
    text = _SIGNATURE_LINE.sub(rf"\g<head>{MASK}", text)
    text = _AUTHORIZATION.sub(rf"\g<head>{MASK}", text)
    return _BEARER.sub(rf"\g<head>{MASK}", text)


def password_in_url(text: str) -> bool:
    """True when a URL in the text carries a password (`scheme://user:password@`)."""
    return bool(_USERINFO.search(text))


def userinfo_in_url(text: str) -> bool:
    """True when a URL in the text carries any userinfo (`scheme://user@`, `scheme://id:key@`)."""
    return bool(_ANY_USERINFO.search(text))


def redact_data(value: Any) -> Any:
    """Every string inside JSON-like data (the status document), redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(key): redact_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(item) for item in value]
    return value


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
