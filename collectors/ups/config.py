"""`kind: ups`: a UPS's management card over SNMP, which MIB it speaks, and how long to wait for it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.schema import Duration, TargetConfig
from collectors.ups.snmp import SnmpAuth


class UpsConfig(TargetConfig):
    kind: Literal["ups"]
    host: str = Field(description="The management card's address or name.", min_length=1)
    port: int = Field(161, description="The SNMP UDP port.", ge=1, le=65535)
    mib: Literal["auto", "rfc1628", "apc"] = Field(
        "auto", description="auto (from sysObjectID: APC enterprise 318, else RFC 1628), rfc1628 or apc.")
    snmp: SnmpAuth = Field(description="{version: 2c, community: ...} or {version: 3, user, auth_protocol, "
                                       "auth_key, priv_protocol, priv_key, context}.")
    snmp_timeout: Duration = Field(3.0, description="How long to wait for each SNMP reply (slow cards: 3s).")
    retries: int = Field(2, description="Resends of an unanswered request before it fails.", ge=0, le=5)
