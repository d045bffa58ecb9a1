"""The app-only token from the Microsoft identity platform, with msal.

msal blocks, so each call runs in a thread of its own with a deadline, and every request
it makes goes through the collector's own client (collectors/m365/msal_http.py): the
transport's size limit, one deadline per exchange, the target's `ca_file` over the
environment's bundles, counting as `authority` and `token`; an abandoned call leaves no
thread reading. msal keeps the token in its in-memory cache and asks for a new one 5
minutes before expiry; when Graph refuses a token before that, `reject(token)` makes the
next call empty the cache and ask anew. Calls are serialised: signals run concurrently,
and msal's cache is not safe to search while it changes (nor is one new token per signal
wanted).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msal
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.net.http import AsyncApi
from agent.reasons import shorten
from collectors.m365.config import M365Config
from collectors.m365.msal_http import AuthorityUnreachable, MsalHttp

T = TypeVar("T")


class AuthError(Exception):
    """No token: one line naming the tenant, the app and the fix, never the secret."""


class TokenSource:
    """Tokens for one app registration in one tenant; `open()` reads the authority's discovery document."""

    def __init__(self, config: M365Config, api: AsyncApi, timeout: float):
        self.config, self._timeout = config, timeout
        self._http = MsalHttp(api)
        self._scopes = [str(config.graph_url).rstrip("/") + "/.default"]
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = asyncio.Lock()
        self._rejected: str | None = None  # the last token Graph refused
        self.where = f"m365 tenant {config.tenant_id} app {config.client_id}"

    async def open(self) -> None:
        credential = await self._thread(self._credential)
        authority = f"{str(self.config.authority).rstrip('/')}/{self.config.tenant_id}"
        try:
            self._app = await self._thread(lambda: msal.ConfidentialClientApplication(
                self.config.client_id, client_credential=credential, authority=authority,
                instance_discovery=False, http_client=self._http, token_cache=msal.TokenCache()))
        except (AuthorityUnreachable, ValueError) as exc:
            raise AuthError(f"{self.where}: cannot read the authority {authority} ({self._why(exc)}); "
                            "check `authority`, `tenant_id`, the network and `ca_file`") from None

    async def token(self) -> str:
        assert self._app is not None, "open() first"  # noqa: S101 — narrows a type; an internal invariant, not input checking
        try:
            async with self._lock:
                result = await self._thread(self._acquire)
        except AuthorityUnreachable as exc:
            raise AuthError(f"{self.where}: the token request failed ({self._why(exc)})") from None
        except (msal.exceptions.MsalServiceError, ValueError, TypeError, AttributeError, KeyError,
                OverflowError) as exc:  # what msal raises reading a token answer that is not one
            raise AuthError(f"{self.where}: the authority's token answer is unusable ({type(exc).__name__}); check "
                            "`authority` (it must be the Microsoft identity platform or a proxy of it)") from None
        token = result.get("access_token")
        if not isinstance(token, str) or not token:
            error, description = result.get("error", "no token"), _first_line(result.get("error_description", ""))
            raise AuthError(f"{self.where}: the authority refused the token ({str(error)[:80]}: {description}); "
                            "check the app's client id and its secret or certificate") from None
        return token

    def reject(self, token: str) -> None:
        """Graph refused this token (expired or revoked early): the next `token()` asks the authority."""
        self._rejected = token

    def _acquire(self) -> dict:
        assert self._app is not None  # noqa: S101 — narrows a type; an internal invariant, not input checking
        result = self._app.acquire_token_for_client(self._scopes)
        if self._rejected is not None and result.get("access_token") == self._rejected:
            cache = self._app.token_cache
            for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(entry)
            result = self._app.acquire_token_for_client(self._scopes)
        return result

    async def _thread(self, call: Callable[[], T]) -> T:
        try:
            return await self._http.call(call, self._timeout)
        except TimeoutError:
            raise AuthError(f"{self.where}: the authority {self.config.authority} did not answer within "
                            f"{self._timeout:g}s; check that it is up and `authority`") from None

    def _why(self, exc: Exception) -> str:
        """A network failure in a few words."""
        if isinstance(exc, AuthorityUnreachable):
            return exc.reason
        return _first_line(exc)

    def _credential(self) -> str | dict[str, str]:
        if self.config.client_secret is not None:
            return self.config.client_secret.get_secret_value()
        certificate = self.config.client_certificate
        assert certificate is not None  # noqa: S101 — narrows a type; an internal invariant, not input checking
        try:
            cert_pem = certificate.cert_file.read_bytes()
            der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
            key = certificate.key_file.get_secret_value()
            if not key.lstrip().startswith("-----BEGIN"):
                key = Path(key).read_text()
        except (OSError, ValueError) as exc:
            raise AuthError(f"{self.where}: cannot load the client certificate {certificate.cert_file} or its "
                            f"key ({type(exc).__name__}); they must be PEM files readable by vigil") from None
        return {"private_key": key, "thumbprint": hashlib.sha1(der, usedforsecurity=False).hexdigest(),
                "public_certificate": cert_pem.decode()}


def _first_line(value: object) -> str:
    text = str(value).strip()
    return shorten(text.splitlines()[0], 200) if text else ""
