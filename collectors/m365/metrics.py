"""The `vigil_m365_*` catalogue."""

from agent.model import Condition, MetricSpec

# serviceHealthStatus members of Graph v1.0 (CSDL), in its camelCase; "other" for a member added later
SERVICE_STATUSES = (
    "serviceOperational", "investigating", "restoringService", "verifyingService", "serviceRestored",
    "postIncidentReviewPublished", "serviceDegradation", "serviceInterruption", "extendedRecovery",
    "falsePositive", "investigationSuspended", "resolved", "mitigatedExternal", "mitigated",
    "resolvedExternal", "confirmed", "reported", "other",
)
CLASSIFICATIONS = ("advisory", "incident")
LICENSE_STATES = {"enabled": "enabled", "suspended": "suspended", "warning": "warning", "lockedOut": "locked_out"}
# deviceCompliancePolicyDeviceStateSummary count property -> complianceState spelling
COMPLIANCE_COUNTS = {
    "compliantDeviceCount": "compliant", "nonCompliantDeviceCount": "noncompliant",
    "inGracePeriodCount": "inGracePeriod", "conflictDeviceCount": "conflict", "errorDeviceCount": "error",
    "unknownDeviceCount": "unknown", "configManagerCount": "configManager",
    "notApplicableDeviceCount": "notApplicable", "remediatedDeviceCount": "remediated",
}
MAILBOX_QUOTAS = {"issue_warning": "Issue Warning Quota (Byte)", "prohibit_send": "Prohibit Send Quota (Byte)",
                  "prohibit_send_receive": "Prohibit Send/Receive Quota (Byte)"}

SERVICE_STATUS = MetricSpec("vigil_m365_service_status", "gauge",
                            "Service health of a Microsoft 365 service, one-hot by Graph's status.",
                            ("service", "status"))
SERVICE_ISSUES = MetricSpec("vigil_m365_service_issues", "gauge",
                            "Open (unresolved) service health issues of a service, by classification.",
                            ("service", "classification"))
SYNC_ENABLED = MetricSpec("vigil_m365_directory_sync_enabled", "gauge",
                          "1 when the tenant synchronises an on-premises directory (Entra Connect).")
LAST_SYNC = MetricSpec("vigil_m365_directory_last_sync_timestamp_seconds", "gauge",
                       "When Entra Connect last synchronised the on-premises directory.", unit="seconds")
LICENSE_UNITS = MetricSpec("vigil_m365_license_units", "gauge",
                           "Prepaid licence units of a SKU by state (enabled, suspended, warning, locked_out).",
                           ("sku", "state"))
LICENSE_CONSUMED = MetricSpec("vigil_m365_license_consumed_units", "gauge",
                              "Licence units of a SKU assigned to users.", ("sku",))
APP_CREDENTIAL_EXPIRY = MetricSpec("vigil_m365_app_credential_expiry_timestamp_seconds", "gauge",
                                   "When the earliest client secret or certificate of an app registration "
                                   "expires (type secret or certificate).", ("app", "type"), "seconds")
SECURE_SCORE = MetricSpec("vigil_m365_secure_score", "gauge",
                          "Microsoft Secure Score of the tenant (Graph computes it daily).")
SECURE_SCORE_MAX = MetricSpec("vigil_m365_secure_score_max", "gauge", "The highest Secure Score possible.")
DEVICES = MetricSpec("vigil_m365_devices", "gauge", "Intune managed devices by compliance state.",
                     ("compliance",))
MAILBOXES = MetricSpec("vigil_m365_mailboxes", "gauge",
                       "Mailboxes in the Exchange usage report, deleted ones left out (Graph refreshes it daily).")
MAILBOXES_OVER_QUOTA = MetricSpec("vigil_m365_mailboxes_over_quota", "gauge",
                                  "Mailboxes whose storage used has reached a quota (issue_warning, "
                                  "prohibit_send, prohibit_send_receive).", ("quota",))
MAILBOX_STORAGE = MetricSpec("vigil_m365_mailbox_storage_used_bytes", "gauge",
                             "Storage used by all mailboxes of the usage report.", unit="bytes")
SITES = MetricSpec("vigil_m365_sharepoint_sites", "gauge",
                   "SharePoint sites in the usage report, deleted ones left out (Graph refreshes it daily).")
SITES_NEAR_QUOTA = MetricSpec("vigil_m365_sharepoint_sites_near_quota", "gauge",
                              "SharePoint sites using at least the configured share of their storage allocated.")
SITE_STORAGE = MetricSpec("vigil_m365_sharepoint_storage_used_bytes", "gauge",
                          "Storage used by all SharePoint sites of the usage report.", unit="bytes")
PERMISSION_MISSING = MetricSpec("vigil_m365_permission_missing", "gauge",
                                "1 when Graph refused a signal for want of its application permission (403).",
                                ("signal", "permission"))

METRICS = (SERVICE_STATUS, SERVICE_ISSUES, SYNC_ENABLED, LAST_SYNC, LICENSE_UNITS, LICENSE_CONSUMED,
           APP_CREDENTIAL_EXPIRY, SECURE_SCORE, SECURE_SCORE_MAX, DEVICES, MAILBOXES, MAILBOXES_OVER_QUOTA,
           MAILBOX_STORAGE, SITES, SITES_NEAR_QUOTA, SITE_STORAGE, PERMISSION_MISSING)

_SKU = "on (job, instance, target, sku)"
_CREDENTIAL_LEFT = "vigil_m365_app_credential_expiry_timestamp_seconds - time()"
# deploy/prometheus/rules/m365.yml
CONDITIONS = (
    Condition("M365ServiceInterrupted", "critical", 'vigil_m365_service_status{status="serviceInterruption"} == 1',
              "{service} interrupted"),
    Condition("M365ServiceDegraded", "warning",
              'vigil_m365_service_status{status=~"serviceDegradation|extendedRecovery"} == 1', "{service} degraded"),
    Condition("M365DirectorySyncStale", "warning",
              "time() - vigil_m365_directory_last_sync_timestamp_seconds > 3 * 3600 "
              "and on (job, instance, target) vigil_m365_directory_sync_enabled == 1",
              "directory not synchronised for {value:duration}"),
    Condition("M365LicensesExhausted", "warning",
              f'vigil_m365_license_consumed_units >= {_SKU} vigil_m365_license_units{{state="enabled"}} '
              f'and {_SKU} vigil_m365_license_units{{state="enabled"}} > 0', "no {sku} licences left"),
    Condition("M365LicensesNearlyExhausted", "warning",
              f'vigil_m365_license_consumed_units / {_SKU} vigil_m365_license_units{{state="enabled"}} >= 0.95 '
              f'and {_SKU} vigil_m365_license_consumed_units < {_SKU} vigil_m365_license_units{{state="enabled"}}',
              "{sku} licences {value:percent} used"),
    Condition("M365AppCredentialExpiresIn30Days", "warning",
              f"{_CREDENTIAL_LEFT} < 30 * 86400 and {_CREDENTIAL_LEFT} >= 7 * 86400",
              "{type} of {app} {value:expires}"),
    Condition("M365AppCredentialExpiresIn7Days", "warning", f"{_CREDENTIAL_LEFT} < 7 * 86400",
              "{type} of {app} {value:expires}"),
    Condition("M365NoncompliantDevicesRising", "warning",
              'vigil_m365_devices{compliance="noncompliant"} - vigil_m365_devices{compliance="noncompliant"} '
              "offset 1d >= 10", "non-compliant devices rising", not_judged="a change over a day of samples"),
    Condition("M365PermissionMissing", "warning", "vigil_m365_permission_missing == 1",
              "permission {permission} missing"),
)
