"""The `kind: m365` target: one tenant, one app registration, the signals it reads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, HttpUrl, model_validator

from agent.ondisk import PEM_OR_PATH, CaFile, CertFile
from agent.schema import CredentialFreeHttpUrl, Duration, StrictModel, TargetConfig
from agent.secrets import Secret

SignalName = Literal["service_health", "directory_sync", "licenses", "app_credentials", "secure_score",
                     "intune", "usage_reports"]


class ClientCertificate(StrictModel):
    cert_file: CertFile = Field(description="the app registration's certificate (PEM), as uploaded to Entra ID")
    key_file: Annotated[Secret, PEM_OR_PATH] = Field(
        description="its private key: a reference whose value is the PEM key, or the path of the PEM key file "
                    "(`${cred:m365_key}` loads it with LoadCredential=)")


class SignalIntervals(StrictModel):
    """How often each signal is read; unset: its default."""

    service_health: Duration | None = Field(None, description="service health (default: every run)")
    directory_sync: Duration | None = Field(None, description="hybrid AD sync state (default: 5m)")
    licenses: Duration | None = Field(None, description="licences per SKU (default: 15m)")
    app_credentials: Duration | None = Field(None, description="app credential expiry (default: 1h)")
    secure_score: Duration | None = Field(None, description="Secure Score, computed daily by Graph (default: 6h)")
    intune: Duration | None = Field(None, description="Intune device compliance (default: 15m)")
    usage_reports: Duration | None = Field(None, description="usage reports, refreshed daily (default: 12h)")


class M365Config(TargetConfig):
    kind: Literal["m365"]
    tenant_id: str = Field(description="the directory (tenant) id, or its primary domain",
                           pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    client_id: str = Field(description="the application (client) id of vigil's app registration",
                           pattern=r"^[0-9a-fA-F-]{36}$")
    client_secret: Secret | None = Field(None, description="a client secret, by reference (a certificate is "
                                                           "recommended instead)")
    client_certificate: ClientCertificate | None = Field(None, description="the app's certificate credential")
    authority: CredentialFreeHttpUrl = Field(HttpUrl("https://login.microsoftonline.com"),
                               description="the sign-in host; national clouds differ (login.microsoftonline.us, "
                                           "login.partner.microsoftonline.cn)")
    graph_url: CredentialFreeHttpUrl = Field(HttpUrl("https://graph.microsoft.com"),
                               description="the Graph host; national clouds differ (graph.microsoft.us, "
                                           "microsoftgraph.chinacloudapi.cn)")
    ca_file: CaFile | None = Field(None, description="a CA bundle for the authority and Graph; wins over "
                                                     "REQUESTS_CA_BUNDLE and SSL_CERT_FILE")
    requests_per_second: float = Field(5.0, gt=0, le=100,
                                       description="this tenant's Graph request budget, shared by its targets")
    applications: tuple[str, ...] = Field((), description="app registrations whose credential expiry is "
                                                          "watched, by app id or display name (empty: all); "
                                                          "vigil's own is always included")
    credentials_within: Duration | None = Field(None, description="export only the app credentials that expire "
                                                                  "within this (expired ones included), so a large "
                                                                  "tenant keeps few series; empty: every app")
    skip: tuple[SignalName, ...] = Field((), description="signals not to collect (their permission is then "
                                                         "not needed)")
    usage_reports: bool = Field(False, description="read the mailbox and SharePoint usage reports "
                                                   "(Reports.Read.All) as aggregates")
    near_quota_ratio: float = Field(0.9, gt=0, le=1, description="a SharePoint site at this share of its "
                                                                 "storage allocated counts as near quota")
    report_period: Literal["D7", "D30", "D90", "D180"] = Field("D7", description="the usage reports' period")
    intervals: SignalIntervals = Field(SignalIntervals(), description="how often each signal is read, "
                                                                      "overriding its default")

    @model_validator(mode="after")
    def _one_credential(self) -> M365Config:
        if (self.client_secret is None) == (self.client_certificate is None):
            raise ValueError("set exactly one of client_secret and client_certificate")
        return self
