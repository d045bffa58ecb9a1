"""The probe kinds' models: what to probe, and what counts as success."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.ondisk import CaFile
from agent.schema import Duration, StrictModel, TargetConfig


class TlsOptions(StrictModel):
    """How a probe verifies the server's certificate: on, always, against the system store or ca_file."""

    ca_file: CaFile | None = Field(None, description="A CA file (PEM) to verify the server's certificate with, "
                                                     "instead of the system's store.")
    server_name: str | None = Field(None, description="The name the certificate must be for (and sent as SNI), "
                                                      "when not the host probed.")


# --- tcp, dns, icmp: the network probes ---------------------------------------------------------

class Exchange(StrictModel):
    """One step of a TCP conversation: a line to send, or a line the server must send."""

    send: str | None = Field(None, description="A line to send (vigil adds CRLF).")
    expect: re.Pattern[str] | None = Field(None, description="A regular expression a line from the server must "
                                                             "match (searched: `^` anchors it); the lines before "
                                                             "it are skipped.")

    @model_validator(mode="after")
    def _one_of(self) -> Exchange:
        if (self.send is None) == (self.expect is None):
            raise ValueError("each step has exactly one of send: or expect:")
        return self


class TcpConfig(TargetConfig):
    kind: Literal["tcp"]
    host: str = Field(description="The host to connect to (a name or an address).", min_length=1)
    port: int = Field(description="Its TCP port.", ge=1, le=65535)
    exchange: list[Exchange] = Field([], description="What to send and expect after connecting, in order "
                                                     "(`- send: PING` then `- expect: ^\\+PONG`).")


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
    answers_match: re.Pattern[str] | None = Field(None, description="A regular expression every answer must "
                                                                    "match (searched); an empty answer fails.")

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
