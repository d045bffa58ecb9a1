"""`kind: meraki`: the Dashboard API key, which organizations, this target's share of their rate budget, and the
optional endpoint groups."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.ondisk import CaFile
from agent.schema import CredentialFreeUrl, Duration, TargetConfig
from agent.secrets import HeaderSecret


class MerakiConfig(TargetConfig):
    kind: Literal["meraki"]
    api_key: HeaderSecret = Field(description="The Dashboard API key, as a secret reference (${cred:meraki}).")
    organizations: list[str] = Field(
        default_factory=list, description="Organization ids to read; empty reads every organization the key "
                                          "sees whose API access is enabled.")
    base_url: CredentialFreeUrl = Field("https://api.meraki.com/api/v1", description=(
        "The API's base URL: api.meraki.ca, api.meraki.cn, api.meraki.in or the US government host for "
        "organizations hosted there."))
    requests_per_second: float = Field(5.0, gt=0, le=10, description=(
        "This target's share of the organization's 10 requests/s, which every application of the "
        "organization spends."))
    ca_file: CaFile | None = Field(None, description=(
        "A CA bundle for a private TLS proxy; wins over REQUESTS_CA_BUNDLE and SSL_CERT_FILE."))
    deadline: Duration | None = Field(None, description=(
        "How long a cycle may take before it reports what it has; default 80% of the target's timeout "
        "(16s for the default 20s). Must be shorter than the timeout."))
    licenses_every: Duration = Field(3600.0, description="How often the licence overview is read.")
    wireless_channel_utilization: bool = Field(False, description=(
        "Also read channel utilisation per access point and band (paged, 1,000 APs a call)."))
    switch_port_statuses: bool = Field(False, description=(
        "Also read port statuses per switch (bySwitch pages hold only 20 switches: 50 calls for 1,000 "
        "switches)."))
    assurance_alerts: bool = Field(False, description="Also count active assurance alerts by severity.")

    @model_validator(mode="after")
    def _deadline_within_timeout(self) -> MerakiConfig:
        if self.deadline and self.timeout and self.deadline >= self.timeout:
            raise ValueError("deadline must be shorter than the timeout, or the timeout drops the whole cycle")
        return self

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL: the API key travels with every request")
        return value.rstrip("/")
