"""One reader per signal: the Graph endpoint it reads, the permission it needs, its samples.

Each sends only the query options its endpoint's v1.0 page documents (Graph answers 400 to
others, e.g. `$select` on secureScores), and reads the fewest pages it can: `$select` of
the fields used where documented, the largest page the endpoint documents (`$top`, or the
`Prefer: odata.maxpagesize` header where the page sizes pages that way), and Graph's own
aggregates where there is one (Intune's compliance summary instead of listing every
device; service health overviews instead of one call per service), so calls per cycle
grow with pages, never with objects. Enum values are compared case-insensitively:
Graph's metadata spells them camelCase, its examples PascalCase.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.collector import Emitter
from collectors.m365 import metrics as m
from collectors.m365.config import M365Config
from collectors.m365.graph import Graph, GraphError

Reader = Callable[[Graph, Emitter, M365Config, float], Awaitable[None]]


@dataclass(frozen=True)
class Source:
    read: Reader
    endpoint: str  # for docs/m365.md and the log
    permission: str  # the least application permission Graph needs for it
    every: float | None  # seconds between reads by default; None: every run


async def service_health(graph: Graph, out: Emitter, config: M365Config, now: float) -> None:
    services: dict[str, str] = {}
    async for item in graph.items("/v1.0/admin/serviceAnnouncement/healthOverviews", "healthOverviews",
                                  {"$select": "service,status"}):
        services[_text(item, "service")] = _member(item.get("status"), m.SERVICE_STATUSES, "other")
    issues: Counter[tuple[str, str]] = Counter()
    async for item in graph.items("/v1.0/admin/serviceAnnouncement/issues", "issues",
                                  {"$filter": "isResolved eq false", "$select": "service,classification"},
                                  {"Prefer": "odata.maxpagesize=1000"}):
        classification = _member(item.get("classification"), m.CLASSIFICATIONS, None)
        if classification:  # unknownFutureValue: a kind of issue this version does not know
            issues[_text(item, "service"), classification] += 1
    for service, status in services.items():
        for member in m.SERVICE_STATUSES:
            out.gauge(m.SERVICE_STATUS, int(member == status), service=service, status=member)
    for service in sorted(set(services) | {service for service, _ in issues}):
        for classification in m.CLASSIFICATIONS:
            out.gauge(m.SERVICE_ISSUES, issues[service, classification], service=service,
                      classification=classification)


async def directory_sync(graph: Graph, out: Emitter, config: M365Config, now: float) -> None:
    organizations = [item async for item in graph.items(
        "/v1.0/organization", "organization", {"$select": "id,onPremisesSyncEnabled,onPremisesLastSyncDateTime"})]
    if len(organizations) != 1:
        raise GraphError(f"Graph listed {len(organizations)} organizations, not the tenant's one")
    (organization,) = organizations
    out.gauge(m.SYNC_ENABLED, int(organization.get("onPremisesSyncEnabled") is True))
    if organization.get("onPremisesLastSyncDateTime") is not None:
        out.gauge(m.LAST_SYNC, _timestamp(organization["onPremisesLastSyncDateTime"]))


async def licenses(graph: Graph, out: Emitter, config: M365Config, now: float) -> None:
    async for sku in graph.items("/v1.0/subscribedSkus", "subscribedSkus",
                                 {"$select": "skuId,skuPartNumber,prepaidUnits,consumedUnits"}):
        name = _text(sku, "skuPartNumber")
        prepaid = sku.get("prepaidUnits") if isinstance(sku.get("prepaidUnits"), dict) else {}
        for key, state in m.LICENSE_STATES.items():
            out.gauge(m.LICENSE_UNITS, _number(prepaid.get(key)), sku=name, state=state)
        out.gauge(m.LICENSE_CONSUMED, _number(sku.get("consumedUnits")), sku=name)


async def app_credentials(graph: Graph, out: Emitter, config: M365Config, now: float) -> None:
    """The earliest expiry of each app's credentials still valid, or the latest one if all have expired.

    An expired secret kept beside its replacement is not an outage; an app whose every secret
    has expired is one, and shows as a time in the past. Listed apps are picked here: Graph
    filters applications by one property at a time, and the pages are the cost anyway.
    """
    wanted = set(config.applications) | {config.client_id} if config.applications else set()
    ends: dict[tuple[str, str], list[float]] = {}
    async for app in graph.items("/v1.0/applications", "applications",
                                 {"$select": "appId,displayName,passwordCredentials,keyCredentials",
                                  "$top": "999"}):
        if wanted and not wanted & {app.get("appId"), app.get("displayName")}:
            continue
        name = app.get("displayName") or _text(app, "appId")
        for kind, key in (("secret", "passwordCredentials"), ("certificate", "keyCredentials")):
            found = [_timestamp(credential["endDateTime"]) for credential in _objects(app.get(key))
                     if credential.get("endDateTime")]
            if found:
                ends.setdefault((str(name), kind), []).extend(found)
    horizon = now + config.credentials_within if config.credentials_within else math.inf
    for (name, kind), times in sorted(ends.items()):
        valid = [end for end in times if end > now]
        expiry = min(valid) if valid else max(times)
        if expiry <= horizon:
            out.gauge(m.APP_CREDENTIAL_EXPIRY, expiry, app=name, type=kind)


async def secure_score(graph: Graph, out: Emitter, config: M365Config, now: float) -> None:
    body = await graph.get("/v1.0/security/secureScores", "secureScores", {"$top": "1"})  # no $select: not documented
    scores = _objects(body.get("value"))
    if scores:  # a new tenant has none until Graph's first daily computation
        out.gauge(m.SECURE_SCORE, _number(scores[0].get("currentScore")))
        out.gauge(m.SECURE_SCORE_MAX, _number(scores[0].get("maxScore")))


async def intune(graph: Graph, out: Emitter, config: M365Config, now: float) -> None:
    body = await graph.get("/v1.0/deviceManagement/deviceCompliancePolicyDeviceStateSummary",
                           "deviceCompliancePolicyDeviceStateSummary")
    summary = body["value"] if isinstance(body.get("value"), dict) else body  # the doc example wraps it
    if not any(key in summary for key in m.COMPLIANCE_COUNTS):
        raise GraphError("Graph's device compliance summary has no device counts")
    for key, state in m.COMPLIANCE_COUNTS.items():
        out.gauge(m.DEVICES, _number(summary.get(key)), compliance=state)


async def usage_reports(graph: Graph, out: Emitter, config: M365Config, now: float) -> None:
    """Aggregates only: never a series per mailbox or site."""
    period = config.report_period
    mailboxes = _rows(await graph.report(f"/v1.0/reports/getMailboxUsageDetail(period='{period}')",
                                         "getMailboxUsageDetail"), "Storage Used (Byte)")
    out.gauge(m.MAILBOXES, len(mailboxes))
    out.gauge(m.MAILBOX_STORAGE, sum(_bytes(row, "Storage Used (Byte)") for row in mailboxes))
    for quota, column in m.MAILBOX_QUOTAS.items():
        out.gauge(m.MAILBOXES_OVER_QUOTA, sum(
            1 for row in mailboxes if 0 < _bytes(row, column) <= _bytes(row, "Storage Used (Byte)")), quota=quota)
    sites = _rows(await graph.report(f"/v1.0/reports/getSharePointSiteUsageDetail(period='{period}')",
                                     "getSharePointSiteUsageDetail"), "Storage Used (Byte)", "Storage Allocated (Byte)")
    out.gauge(m.SITES, len(sites))
    out.gauge(m.SITE_STORAGE, sum(_bytes(row, "Storage Used (Byte)") for row in sites))
    out.gauge(m.SITES_NEAR_QUOTA, sum(
        1 for row in sites if 0 < _bytes(row, "Storage Allocated (Byte)") * config.near_quota_ratio
        <= _bytes(row, "Storage Used (Byte)")))


SOURCES: dict[str, Source] = {
    "service_health": Source(service_health, "/admin/serviceAnnouncement/healthOverviews and /issues",
                             "ServiceHealth.Read.All", None),
    "directory_sync": Source(directory_sync, "/organization", "Organization.Read.All", 300),
    "licenses": Source(licenses, "/subscribedSkus", "Organization.Read.All", 900),
    "app_credentials": Source(app_credentials, "/applications", "Application.Read.All", 3600),
    "secure_score": Source(secure_score, "/security/secureScores?$top=1", "SecurityEvents.Read.All", 6 * 3600),
    "intune": Source(intune, "/deviceManagement/deviceCompliancePolicyDeviceStateSummary",
                     "DeviceManagementConfiguration.Read.All", 900),
    "usage_reports": Source(usage_reports, "/reports/getMailboxUsageDetail, /reports/getSharePointSiteUsageDetail",
                            "Reports.Read.All", 12 * 3600),
}


def _member(value: object, members: Iterable[str], otherwise: str | None) -> str | None:
    """Graph's enum member, matched case-insensitively."""
    if not isinstance(value, str):
        raise GraphError(f"Graph sent the enum value {value!r}, not a string")
    return {member.lower(): member for member in members}.get(value.lower(), otherwise)


def _text(item: dict, key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise GraphError(f"Graph sent an item without `{key}`")
    return value


def _objects(value: object) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _number(value: object) -> float | None:
    """A count or score; None for another type or an integer beyond a float (JSON allows 1 and 400 zeros)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _timestamp(value: object) -> float:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise GraphError(f"Graph sent the time {str(value)[:40]!r}, not ISO 8601") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _rows(text: str, *required: str) -> list[dict[str, str]]:
    """A report's rows by column name (the documented columns and the served ones differ), deleted ones left out."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in required if column not in (reader.fieldnames or ())]
    if missing:
        raise GraphError(f"the usage report has no column {missing[0]!r}")
    return [row for row in reader if (row.get("Is Deleted") or "").strip().lower() != "true"]


def _bytes(row: dict[str, str], column: str) -> float:
    try:
        value = float(row.get(column) or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0  # a negative size is none known
