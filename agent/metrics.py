"""The agent's own metric families, and the shipped rules about every job and the agent itself.

Every job carries them (`vigil_up`, durations, signals, request counters), whatever its
kind; the agent's own facts (reload, certificate, state database) are single series. The
exporters render them; docs/metrics.md lists them first (agent.catalogue).
"""

from __future__ import annotations

from agent.model import Condition, MetricSpec

JOB_LABELS = ("kind", "target")  # a backup job's say `backup` instead of `target`, as its data series do

UP = MetricSpec("vigil_up", "gauge",
                "1 when the target's last collection ran and its main signal succeeded, 0 when it failed.",
                JOB_LABELS)
DURATION = MetricSpec("vigil_collect_duration_seconds", "gauge",
                      "How long the target's last collection took.", JOB_LABELS, "seconds")
LAST_SUCCESS = MetricSpec("vigil_last_success_timestamp_seconds", "gauge",
                          "When the target was last collected successfully (kept across restarts).",
                          JOB_LABELS, "seconds")
ERRORS = MetricSpec("vigil_collect_errors_total", "counter",
                    "Failed collections of the target since the agent started.", JOB_LABELS)
SKIPPED = MetricSpec("vigil_collect_skipped_total", "counter",
                     "Runs skipped because the target's previous run was still going.", JOB_LABELS)
INTERVAL = MetricSpec("vigil_collect_interval_seconds", "gauge",
                      "The target's collection interval.", JOB_LABELS, "seconds")
BUILD_INFO = MetricSpec("vigil_build_info", "gauge", "vigil's version, value 1.", ("version", "python"))
STATE_OK = MetricSpec("vigil_state_database_ok", "gauge",
                      "1 while the state database on disk takes writes, 0 when it cannot (damaged, locked, full, "
                      "read-only) and vigil keeps state in memory until a write succeeds.")
SIGNAL_SUCCESS = MetricSpec("vigil_collect_signal_success", "gauge",
                            "1 when the signal's data is current (collected by its last due run), 0 when it "
                            "failed; one series per signal of the target.", (*JOB_LABELS, "signal"))
SIGNAL_TIME = MetricSpec("vigil_collect_signal_timestamp_seconds", "gauge",
                         "When the signal's exported data was collected (slow signals are re-emitted "
                         "between their runs).", (*JOB_LABELS, "signal"), "seconds")
REJECTED = MetricSpec("vigil_collect_rejected_samples_total", "counter",
                      "Samples refused because they did not match the collector's catalogue (a bug; logged once).",
                      JOB_LABELS)
API_REQUESTS = MetricSpec("vigil_api_requests_total", "counter",
                          "Requests (API calls, SNMP PDUs, SSH commands) the target's collector made, by API and "
                          "result code; kept by the agent across failed runs.", (*JOB_LABELS, "api", "code"))
API_WAIT = MetricSpec("vigil_api_wait_seconds_total", "counter",
                      "Time the target's collector waited for its API budget (rate limits, Retry-After).",
                      (*JOB_LABELS, "api"), "seconds")
RELOAD_OK = MetricSpec("vigil_config_reload_success", "gauge",
                       "1 when the agent's last config load (start or SIGHUP) succeeded, 0 when the last reload was "
                       "rejected and the agent runs on the config it had before.")
RELOAD_TIME = MetricSpec("vigil_config_reload_timestamp_seconds", "gauge",
                         "When the agent last loaded its config successfully (start or SIGHUP).", (), "seconds")
CERT_EXPIRY = MetricSpec("vigil_tls_certificate_expiry_timestamp_seconds", "gauge",
                         "When the certificate the agent's own endpoint serves (the web config's cert_file) expires; "
                         "read at start and on every reload. Absent without TLS.", (), "seconds")
AGENT_METRICS = (UP, DURATION, LAST_SUCCESS, ERRORS, SKIPPED, INTERVAL, SIGNAL_SUCCESS, SIGNAL_TIME, REJECTED,
                 API_REQUESTS, API_WAIT, BUILD_INFO, STATE_OK, RELOAD_OK, RELOAD_TIME, CERT_EXPIRY)

# deploy/prometheus/rules/agent.yml: the rules about every job (the status page judges them over each job's
# series) ...
JOB_CONDITIONS = (
    Condition("VigilJobFailing", "warning", "vigil_up == 0", "collection failing"),
    Condition("VigilJobStale", "warning",
              "time() - vigil_last_success_timestamp_seconds > clamp_min(5 * vigil_collect_interval_seconds, 900)",
              "no good collection for {value:duration}"),
    Condition("VigilSchedulerOverrun", "warning", "increase(vigil_collect_skipped_total[15m]) > 0", "runs skipped",
              not_judged="an increase over 15 min of samples"),
)
_CERT_LEFT = "vigil_tls_certificate_expiry_timestamp_seconds - time()"
_SCRAPE = "about Prometheus' scrape of the agent, which only Prometheus sees"
_SUMMARY = "the status page's summary line says it, with the reason"
# ... and about the agent itself (over its own series)
AGENT_CONDITIONS = (
    Condition("VigilDown", "critical", 'up{job="vigil"} == 0', "not scraped", not_judged=_SCRAPE),
    Condition("VigilMissing", "critical", 'absent(up{job="vigil"})', "no scrape target", not_judged=_SCRAPE),
    Condition("VigilStateDatabaseUnavailable", "warning", "vigil_state_database_ok == 0",
              "state database unavailable", not_judged=_SUMMARY),
    Condition("VigilReloadFailed", "warning", "vigil_config_reload_success == 0", "last reload rejected",
              not_judged=_SUMMARY),
    Condition("VigilCertificateExpiring", "warning", f"{_CERT_LEFT} < 30 * 86400 and {_CERT_LEFT} >= 7 * 86400",
              "the agent's TLS certificate {value:expires}"),
    Condition("VigilCertificateExpiring", "critical", f"{_CERT_LEFT} < 7 * 86400",
              "the agent's TLS certificate {value:expires}"),
)
