"""The probe kinds' models: what to probe, and what counts as success."""

from __future__ import annotations

from pydantic import Field

from agent.ondisk import CaFile
from agent.schema import StrictModel


class TlsOptions(StrictModel):
    """How a probe verifies the server's certificate: on, always, against the system store or ca_file."""

    ca_file: CaFile | None = Field(None, description="A CA file (PEM) to verify the server's certificate with, "
                                                     "instead of the system's store.")
    server_name: str | None = Field(None, description="The name the certificate must be for (and sent as SNI), "
                                                      "when not the host probed.")


# --- the database kinds (postgres, mysql) ---------------------------------------------------------------------

from typing import Literal  # noqa: E402  (this block is the database kinds' own, for an easy merge)

from pydantic import model_validator  # noqa: E402

from agent.schema import Duration, TargetConfig  # noqa: E402
from agent.secrets import Secret  # noqa: E402


class DatabaseConfig(TargetConfig, TlsOptions):
    """What both database kinds need: where, who (a read-only account), in TLS, under a statement timeout."""

    host: str = Field(description="The database server's host name or address.", min_length=1)
    user: str = Field(description="A read-only monitoring account (the page shows how to create one).",
                      min_length=1)
    password: Secret = Field(description="Its password, by reference (`${cred:pg}`).")
    tls: Literal["verify", "required", "off"] = Field(
        "verify", description="verify: TLS, the certificate verified; required: TLS, not verified; off: no TLS "
                              "(a server without TLS when it is asked for fails the probe).")
    query: str = Field("SELECT 1", description="A query run as the trivial check (its rows are not read): one "
                                               "that reads the application's own table tests more.",
                       min_length=1)
    statement_timeout: Duration = Field(2.0, description="How long the server lets each query of the probe run "
                                                         "(set in the session); keep it under the job's timeout.")

    @model_validator(mode="after")
    def _verification_needs_tls_verify(self) -> DatabaseConfig:
        if self.tls != "verify" and (self.ca_file or self.server_name):
            raise ValueError(f"ca_file and server_name verify the certificate: they need tls: verify, "
                             f"not tls: {self.tls}")
        return self


class PostgresConfig(DatabaseConfig):
    kind: Literal["postgres"]
    port: int = Field(5432, description="The server's TCP port.", ge=1, le=65535)
    database: str = Field("postgres", description="The database to log in to.", min_length=1)


class MysqlConfig(DatabaseConfig):
    kind: Literal["mysql"]
    port: int = Field(3306, description="The server's TCP port.", ge=1, le=65535)
    database: str | None = Field(None, description="A database to log in to (none: the login alone).")
