"""The Prometheus `web-config.yml` format (TLS and basic auth), as official exporters read it.

Supported: `tls_server_config` (cert_file, key_file, client_auth_type, client_ca_file,
min_version, max_version), `http_server_config.headers`, and `basic_auth_users` with
bcrypt hashes. Errors name the file and line like the main config's.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
from pathlib import Path
from typing import Annotated, Literal

import bcrypt
from pydantic import AfterValidator, model_validator

from agent.config import load_model
from agent.schema import StrictModel

TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


class TLSServerConfig(StrictModel):
    cert_file: Path
    key_file: Path
    client_auth_type: Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS12", "TLS13"] = "TLS13"

    @model_validator(mode="after")
    def _client_ca_needed(self):
        if self.client_auth_type != "NoClientCert" and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        return self


class HTTPServerConfig(StrictModel):
    headers: dict[str, str] = {}


def _bcrypt_only(hashed: str) -> str:
    if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
        raise ValueError("must be a bcrypt hash, never a password "
                         "(make one with: htpasswd -nBC 10 \"\" | tr -d ':')")
    return hashed


class WebConfig(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, Annotated[str, AfterValidator(_bcrypt_only)]] = {}


def load_web_config(path: Path | None) -> WebConfig:
    """The web config at `path` (none means plain HTTP without auth); raises ConfigError."""
    return WebConfig() if path is None else load_model(WebConfig, path)


def ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """A server context; raises OSError/ssl.SSLError naming the file that is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    context.load_cert_chain(tls.cert_file, tls.key_file)
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=tls.client_ca_file)
    return context


class BasicAuth:
    """Checks credentials against bcrypt hashes, caching successes (bcrypt is slow on purpose)."""

    def __init__(self, users: dict[str, str]):
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, user: str, password: str) -> bool:
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(hashed + b"\0" + user.encode() + b"\0" + password.encode()).digest()
        with self._lock:
            if key in self._verified:
                return True
        try:
            if not bcrypt.checkpw(password.encode(), hashed):
                return False
        except ValueError:  # a malformed hash: refuse, never crash the request thread
            return False
        with self._lock:
            if len(self._verified) > 64:
                self._verified.clear()
            self._verified.add(key)
        return True
