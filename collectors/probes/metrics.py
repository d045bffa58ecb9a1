"""What the probes emit: success, the duration of each phase, each served certificate; each kind's part.

Every kind emits SUCCESS and DURATION; a kind that shakes hands in TLS emits the TLS families
(the whole served chain, by position, so that an intermediate about to expire is seen, not only
the earliest date of the chain).
"""

from agent.model import Condition, MetricSpec

SUCCESS = MetricSpec("vigil_probe_success", "gauge",
                     "1 when the service answered as expected, 0 when not (the reason is on the status page and "
                     "in `vigil once`).")
DURATION = MetricSpec("vigil_probe_duration_seconds", "gauge",
                      "How long each phase of the last probe took (resolve, connect, tls, ..., total).",
                      ("phase",), "seconds")
NOT_AFTER = MetricSpec("vigil_tls_certificate_not_after_timestamp_seconds", "gauge",
                       "When each certificate the server sent expires, by its place in the chain (leaf, "
                       "intermediate, root).", ("position", "subject", "issuer"), "seconds")
NOT_BEFORE = MetricSpec("vigil_tls_certificate_not_before_timestamp_seconds", "gauge",
                        "When each certificate the server sent became valid.", ("position", "subject", "issuer"),
                        "seconds")

COMMON = (SUCCESS, DURATION)
TLS = (NOT_AFTER, NOT_BEFORE)

METRICS = (*COMMON, *TLS)  # every family of the probes; each kind's tuple is its part of it
CONDITIONS = ()

# --- the TLS handshake (collectors/probes/tls.py): every kind that shakes hands in TLS emits these too.
# A version is a number (1.0 ... 1.3), not one-hot: versions are ordered, so the alert is `< 1.2` and a
# panel shows it as it is, on one series per target that never changes its labels.
NEGOTIATED_VERSION = MetricSpec("vigil_tls_negotiated_version", "gauge",
                                "The TLS protocol version the last probe negotiated (1.2, 1.3).")
OLDEST_VERSION = MetricSpec("vigil_tls_oldest_version_accepted", "gauge",
                            "The oldest TLS protocol version the server still accepts (1.0, 1.1, 1.2, 1.3), "
                            "checked once an hour; 1.0 and 1.1 are broken and deprecated.")
HANDSHAKE = (*TLS, NEGOTIATED_VERSION, OLDEST_VERSION)  # what a kind that shakes hands in TLS declares
METRICS = (*METRICS, NEGOTIATED_VERSION, OLDEST_VERSION)

# --- http ---
HTTP_STATUS = MetricSpec("vigil_http_status_code", "gauge",
                         "The status code of the last answer (after the redirects followed, if followed).")
HTTP_METRICS = (*COMMON, *HANDSHAKE, HTTP_STATUS)
METRICS = (*METRICS, HTTP_STATUS)


# --- tcp, dns, icmp: the network probes ---------------------------------------------------------

DNS_ANSWERS = MetricSpec("vigil_probe_dns_answers", "gauge",
                         "How many records of the type asked for the last answer held.")
DNS_RCODE = MetricSpec("vigil_probe_dns_response_code", "gauge",
                       "The response code of the last answer, as a number (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, "
                       "5 REFUSED).")
DNS_CHECKSUM = MetricSpec("vigil_probe_dns_answer_checksum", "gauge",
                          "A checksum of the last answer's records, sorted (48 bits of their SHA-256): it changes "
                          "when, and only when, the answer does.")
ICMP_LOSS = MetricSpec("vigil_probe_icmp_loss_ratio", "gauge",
                       "The share of the last probe's echo requests that got no reply (0 to 1).", (), "ratio")
ICMP_RTT_MIN = MetricSpec("vigil_probe_icmp_round_trip_min_seconds", "gauge",
                          "The shortest round trip of the last probe's echo replies.", (), "seconds")
ICMP_RTT_AVG = MetricSpec("vigil_probe_icmp_round_trip_avg_seconds", "gauge",
                          "The mean round trip of the last probe's echo replies.", (), "seconds")
ICMP_RTT_MAX = MetricSpec("vigil_probe_icmp_round_trip_max_seconds", "gauge",
                          "The longest round trip of the last probe's echo replies.", (), "seconds")

DNS = (DNS_ANSWERS, DNS_RCODE, DNS_CHECKSUM)
ICMP = (ICMP_LOSS, ICMP_RTT_MIN, ICMP_RTT_AVG, ICMP_RTT_MAX)
TCP_METRICS = (*COMMON, *HANDSHAKE)
DNS_METRICS = (*COMMON, *DNS)
ICMP_METRICS = (*COMMON, *ICMP)
METRICS = (*METRICS, *DNS, *ICMP)


# --- the database kinds (postgres, mysql): one catalogue for both, so one rule and one dashboard row serve both

DB_INFO = MetricSpec("vigil_db_info", "gauge",
                     "The database server's version and replication role (primary, replica); always 1.",
                     ("version", "role"))
DB_REPLICA_LAG = MetricSpec("vigil_db_replica_lag_seconds", "gauge",
                            "How far a replica's data is behind its primary's (0 when it has applied everything "
                            "received); a replica only, while it replicates.", (), "seconds")
DB_CONNECTIONS = MetricSpec("vigil_db_connections", "gauge",
                            "Client connections open on the database server, the probe's own included.")
DB_CONNECTIONS_MAX = MetricSpec("vigil_db_connections_max", "gauge",
                                "The most client connections the database server accepts (max_connections).")
DATABASE = (DB_INFO, DB_REPLICA_LAG, DB_CONNECTIONS, DB_CONNECTIONS_MAX)
POSTGRES_METRICS = (*COMMON, *HANDSHAKE, *DATABASE)
MYSQL_METRICS = (*COMMON, *HANDSHAKE, *DATABASE)
METRICS = (*METRICS, *DATABASE)


# --- the rules (deploy/prometheus/rules/probes.yml), as the status page and `vigil once` judge them ---
# Every kind is judged on its success; a kind that shakes hands in TLS on its certificates (each one of
# the served chain, by position), its handshake and the versions it offers. CONDITIONS, the family's,
# is the union of the kinds'.
_CERT_LEFT = "vigil_tls_certificate_not_after_timestamp_seconds - time()"
DOWN_RULE = Condition("ProbeDown", "critical", "vigil_probe_success == 0", "down",
                      not_judged="the probe's own verdict says it, with the reason (the Services board, `vigil once`)")
CERT_RULES = (
    Condition("ProbeCertificateExpiring", "warning", f"{_CERT_LEFT} < 21 * 86400 and {_CERT_LEFT} >= 7 * 86400",
              "{position} certificate {value:expires}"),
    Condition("ProbeCertificateExpiring", "critical", f"{_CERT_LEFT} < 7 * 86400",
              "{position} certificate {value:expires}"),
)
TLS_BROKEN_RULE = Condition(
    "ProbeTlsBroken", "critical",
    "vigil_probe_success == 0 and on (job, instance, target) "
    'vigil_tls_certificate_not_after_timestamp_seconds{position="leaf"} '
    "unless on (job, instance, target) vigil_tls_negotiated_version",
    "certificate refused")
OLD_TLS_RULE = Condition("ProbeTlsOldVersion", "warning", "vigil_tls_oldest_version_accepted < 1.2",
                         "accepts TLS older than 1.2")
HANDSHAKE_CONDITIONS = (*CERT_RULES, TLS_BROKEN_RULE, OLD_TLS_RULE)  # what a kind that shakes hands in TLS declares
# A change of answer is judged on the past, which only Prometheus keeps.
DNS_CHANGED_RULE = Condition("ProbeDnsAnswerChanged", "warning", "changes(vigil_probe_dns_answer_checksum[15m]) > 0",
                             "answer changed", not_judged="a change over 15 min of samples")
HTTP_CONDITIONS = (DOWN_RULE, *HANDSHAKE_CONDITIONS)
TCP_CONDITIONS = (DOWN_RULE, *HANDSHAKE_CONDITIONS)
DNS_CONDITIONS = (DOWN_RULE, DNS_CHANGED_RULE)
ICMP_CONDITIONS = (DOWN_RULE,)
DATABASE_RULES = (
    Condition("ProbeDatabaseReplicaLagging", "warning", "vigil_db_replica_lag_seconds > 300",
              "{value:duration} behind its primary"),
    Condition("ProbeDatabaseConnectionsNearMax", "warning", "vigil_db_connections / vigil_db_connections_max > 0.9",
              "{value:percent} of its connections in use"),
)
DATABASE_CONDITIONS = (DOWN_RULE, *HANDSHAKE_CONDITIONS, *DATABASE_RULES)  # postgres and mysql
CONDITIONS = (*CONDITIONS, DOWN_RULE, *HANDSHAKE_CONDITIONS, DNS_CHANGED_RULE, *DATABASE_RULES)
