"""The probe kinds' models: what to probe, and what counts as success."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator

from agent.ondisk import CaFile
from agent.schema import CredentialFreeHttpUrl, Duration, Size, StrictModel, TargetConfig
from agent.secrets import HeaderSecret, Secret, one_line, resolve_if_reference


class TlsOptions(StrictModel):
    """How a probe verifies the server's certificate: on, always, against the system store or ca_file."""

    ca_file: CaFile | None = Field(None, description="A CA file (PEM) to verify the server's certificate with, "
                                                     "instead of the system's store.")
    server_name: str | None = Field(None, description="The name the certificate must be for (and sent as SNI), "
                                                      "when not the host probed.")


# --- http ---

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
JsonScalar = str | int | float | bool | None
HeaderValue = Annotated[SecretStr, BeforeValidator(resolve_if_reference), one_line("an HTTP header")]


def _regex(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
    return pattern


Regex = Annotated[str | None, AfterValidator(_regex)]


class BasicAuth(StrictModel):
    user: str = Field(description="The user name.")
    password: HeaderSecret = Field(description="The password, as a secret reference (${cred:web-probe}).")


class HttpConfig(TargetConfig, TlsOptions):
    """`kind: http`: one request to `url`, and what the answer must be."""

    kind: Literal["http"]
    url: CredentialFreeHttpUrl = Field(description="The URL to request (http:// or https://), without a user or "
                                                   "password in it (use basic_auth).")
    method: Literal[HTTP_METHODS] = Field("GET", description="The request's method.")  # type: ignore[valid-type]
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list, description="The status codes that count as success; empty: any 2xx.")
    body_matches: Regex = Field(None, description="A regular expression (Python's) the body must match somewhere.")
    body_not_matches: Regex = Field(None, description="A regular expression the body must not match anywhere "
                                                      "(an error page served with 200).")
    json_equals: dict[str, JsonScalar] = Field(
        default_factory=dict, description="JSON fields of the body, by dotted path (`checks.database`, "
                                          "`items.0.state`), and the value each must have.")
    follow_redirects: bool = Field(True, description="Follow redirects (at most 10); when false, a redirect is the "
                                                     "answer, judged by expect_status.")
    headers: dict[str, HeaderValue] = Field(default_factory=dict, description=(
        "Request headers; a value may be a secret reference (X-Api-Key: ${cred:health-key})."))
    basic_auth: BasicAuth | None = Field(None, description="A user and password sent with HTTP basic "
                                                           "authentication (never after a redirect to another host).")
    bearer_token: HeaderSecret | None = Field(None, description="A token sent as `Authorization: Bearer`, as a "
                                                                "secret reference (never after a redirect to "
                                                                "another host).")
    proxy: CredentialFreeHttpUrl | None = Field(None, description="An HTTP proxy to send the request through "
                                                                  "(http://proxy:3128); the environment's are "
                                                                  "never used.")
    ip_version: Literal["ipv4", "ipv6"] | None = Field(None, description=(
        "The address family to connect over, when the name has both; default: the resolver's first address."))
    ip_fallback: bool = Field(True, description="With ip_version, use the other family when the name has no "
                                                "address of that one; false fails the probe instead.")
    max_body: Size = Field(1 << 20, description="The most of the body read (1MiB); a longer body fails the probe "
                                                "when it must be matched, and is otherwise read only this far.")

    @model_validator(mode="after")
    def _one_authorization(self) -> HttpConfig:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("set basic_auth or bearer_token, not both")
        return self


# --- tcp, dns, icmp: the network probes ---------------------------------------------------------

class Exchange(StrictModel):
    """One step of a TCP conversation: a line to send, or a line the server must send."""

    send: str | None = Field(None, description="A line to send (vigil adds CRLF).")
    expect: Regex = Field(None, description="A regular expression a line from the server must match (searched: "
                                            "`^` anchors it); the lines before it are skipped.")

    @model_validator(mode="after")
    def _one_of(self) -> Exchange:
        if (self.send is None) == (self.expect is None):
            raise ValueError("each step has exactly one of send: or expect:")
        return self


class TcpConfig(TargetConfig, TlsOptions):
    kind: Literal["tcp"]
    host: str = Field(description="The host to connect to (a name or an address).", min_length=1)
    port: int = Field(description="Its TCP port.", ge=1, le=65535)
    tls: bool = Field(False, description="Speak TLS from the first byte (imaps, ldaps, smtps), verified.")
    starttls: Literal["smtp", "imap", "pop3", "ldap", "postgres"] | None = Field(
        None, description="Speak this protocol up to its STARTTLS (PostgreSQL: its SSLRequest), then TLS, verified.")
    exchange: list[Exchange] = Field([], description="What to send and expect after connecting (and after TLS), in "
                                                     "order (`- send: PING` then `- expect: ^\\+PONG`).")

    @model_validator(mode="after")
    def _one_way_to_tls(self) -> TcpConfig:
        if self.tls and self.starttls:
            raise ValueError("set tls: true (TLS at once) or starttls: (TLS after the protocol's own words), "
                             "not both")
        return self


class DnsConfig(TargetConfig):
    kind: Literal["dns"]
    server: str = Field(description="The resolver or name server to ask (an address or a host name).", min_length=1)
    port: int = Field(53, description="Its port (UDP, and TCP when an answer is truncated).", ge=1, le=65535)
    query_name: str = Field(description="The name to look up.", min_length=1)
    query_type: Literal["A", "AAAA", "MX", "CNAME", "SRV"] = Field("A", description="The record type to ask for.")
    expect_rcode: Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"] = Field(
        "NOERROR", description="The response code that counts as success.")
    expect_answers: list[str] | None = Field(
        None, description="The answers there must be, all of them and no other, in any order, as the zone "
                          "writes them (`192.0.2.10`, `10 mail.example.org`, `0 5 443 web.example.org`).")
    answers_match: Regex = Field(None, description="A regular expression every answer must match (searched); an "
                                                   "empty answer fails.")

    @field_validator("expect_answers")
    @classmethod
    def _records(cls, answers: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """The expected answers in the form the probe compares (dnspython only where a dns target is)."""
        if answers is None or "query_type" not in info.data:
            return answers
        from collectors.probes.records import parse

        return [parse(info.data["query_type"], text) for text in answers]


class IcmpConfig(TargetConfig):
    kind: Literal["icmp"]
    host: str = Field(description="The host to ping (a name or an address).", min_length=1)
    count: int = Field(3, description="How many echo requests each probe sends.", ge=1, le=20)
    spacing: Duration = Field(0.2, description="The time between two echo requests.")
    wait: Duration = Field(1.0, description="How long to wait for the reply to the last request.")
# --- the database kinds (postgres, mysql) ---


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
