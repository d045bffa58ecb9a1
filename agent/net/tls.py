"""Why a server's TLS certificate was refused, in words, with the fix that fits that reason.

"Set ca_file" fixes a certificate from a CA this host does not trust, and nothing else: an
expired certificate, one not valid yet or one for another host name is as wrong with the
right CA. Every client that verifies a certificate (the HTTP transport, vCenter, upsd's
STARTTLS, S3, Azure Blob) words its failure here, from OpenSSL's verify code.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator

# OpenSSL's X509_V_ERR_* codes
_NOT_YET_VALID, _EXPIRED, _SELF_SIGNED = 9, 10, 18
_UNKNOWN_CA = frozenset({2, 7, 19, 20, 21})  # no trusted issuer, or a signature none of them made
_WRONG_NAME = frozenset({62, 64})  # host name, IP address mismatch
_NAME = re.compile(r"not valid for '([^']*)'")


def certificate_problem(error: ssl.SSLCertVerificationError) -> tuple[str, str]:
    """What is wrong with the server's certificate ("its TLS certificate ..."), and the fix."""
    code, message = error.verify_code, error.verify_message or str(error.reason)
    if code == _EXPIRED:
        return "its TLS certificate has expired", "renew the certificate on the server"
    if code == _NOT_YET_VALID:
        return "its TLS certificate is not valid yet", "check the clocks of this host and of the server"
    if code in _WRONG_NAME:
        name = match[1] if (match := _NAME.search(message)) else "the name connected to"
        return (f"its TLS certificate is not for {name}",
                "connect by a name the certificate lists, or give the server a certificate for this name")
    if code == _SELF_SIGNED:
        return ("its TLS certificate is self-signed, and not trusted",
                "set ca_file: to that certificate, or give the server one from your CA")
    if code in _UNKNOWN_CA:
        return f"its TLS certificate is not trusted ({message})", "set ca_file: to the CA that signed it"
    return f"its TLS certificate was refused ({message})", "check the server's certificate"


def unknown_issuer(issuer: str, sent: int) -> tuple[str, str]:
    """A certificate whose issuer ("CN=...") is neither among the `sent` certificates nor trusted here. A
    leaf sent alone is most often missing the intermediate that issued it (a browser that has it
    cached hides the fault); after an intermediate, the missing one is the root: a CA not trusted."""
    if sent == 1:
        return (f"the server does not send the intermediate certificate that issued its TLS certificate "
                f"({issuer}), and this host does not trust that issuer",
                "configure the server to send its full chain (leaf, then intermediates), "
                "or set ca_file: to that issuer if it is your own CA")
    return (f"its TLS certificate is not trusted: the chain the server sends was issued by {issuer}, "
            "a CA this host does not trust", "set ca_file: to that CA")


def certificate_refusal(failure: BaseException | None) -> str | None:
    """"its TLS certificate ...; fix" when a refused certificate is behind `failure` (through causes,
    contexts and the errors that botocore and azure-core wrap), else None."""
    for cause in _causes(failure, set()):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "; ".join(certificate_problem(cause))
    return None


def _causes(failure: BaseException | None, seen: set[int]) -> Iterator[BaseException]:
    while failure is not None and id(failure) not in seen:
        seen.add(id(failure))
        yield failure
        for wrapped in (*failure.args, getattr(failure, "kwargs", {}).get("error"),
                        getattr(failure, "inner_exception", None)):
            if isinstance(wrapped, BaseException):
                yield from _causes(wrapped, seen)
        failure = failure.__cause__ or failure.__context__
