"""The Prometheus `web-config.yml` format (TLS and basic auth), as official exporters read it.

Supported: `tls_server_config` (cert_file, key_file, client_auth_type, client_ca_file,
min_version, max_version), `http_server_config.headers`, and `basic_auth_users` with
bcrypt hashes. Errors name the file and line like the main config's; the TLS files are
loaded when the config is, so a reload with a missing or broken certificate is rejected
as a whole and the running one kept.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, model_validator

from agent import yamlfile
from agent.config import ConfigError, ConfigIssue, load_model
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
                         "(make one with: vigil web hash-password)")
    return hashed


class WebConfig(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, Annotated[str, AfterValidator(_bcrypt_only)]] = {}


class WebConfigError(OSError):
    """A TLS file that cannot be used: one line naming the key, the file and the fix."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"tls_server_config.{key}: {message}")

    def __str__(self) -> str:
        return self.args[0]


def load_web_config(path: Path | None) -> WebConfig:
    """The web config at `path` (none means plain HTTP without auth), its TLS files
    loaded once to prove them; raises ConfigError."""
    if path is None:
        return WebConfig()
    web = load_model(WebConfig, path)
    if web.tls_server_config is not None:
        try:
            ssl_context(web.tls_server_config)
        except WebConfigError as exc:
            line = yamlfile.load(path)[1].get(("tls_server_config", exc.key))
            raise ConfigError([ConfigIssue(str(path), line, f"tls_server_config.{exc.key}",
                                           str(exc).partition(": ")[2])]) from None
    return web


def ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """A server context; raises WebConfigError naming the file that is wrong (the ssl
    module's own errors name neither the file nor the problem)."""
    for key in ("cert_file", "key_file", "client_ca_file"):
        if (path := getattr(tls, key)) is not None:
            try:
                path.open("rb").close()
            except OSError as exc:
                raise WebConfigError(key, f"cannot read {path} ({exc.strerror or exc})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except ssl.SSLError as exc:
        raise WebConfigError("cert_file", f"{tls.cert_file} with key_file {tls.key_file} is not a PEM "
                                          f"certificate and its private key ({exc.reason or exc})") from None
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError as exc:
            raise WebConfigError("client_ca_file", f"{tls.client_ca_file} holds no PEM CA certificate "
                                                   f"({exc.reason or exc})") from None
    return context
