"""`vigil alert test`: prove the path from Alertmanager to the phone, without breaking anything.

It sends one alert, VigilTestAlert, straight to Alertmanager's API (v2), labelled as a
real one would be (`severity`, `area: agent`, `instance`), so it is routed, grouped and
delivered exactly like a failed backup; it resolves by itself after `duration`.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from agent.net.tls import certificate_refusal
from agent.reasons import shorten

ALERTNAME = "VigilTestAlert"


class AlertTestError(Exception):
    """The test alert did not reach Alertmanager, or it refused it."""


def send_test_alert(alertmanager: str, severity: str, duration: timedelta, ca_file: Path | None = None) -> str:
    """Post the test alert; the one-line confirmation, or an exception naming what failed."""
    from agent.net.http import ssl_context

    now = datetime.now(UTC)
    host = socket.gethostname()
    alert = {
        "labels": {"alertname": ALERTNAME, "severity": severity, "area": "agent", "instance": host},
        "annotations": {"summary": f"Test alert from vigil on {host}: the path to on-call works",
                        "description": f"Sent by `vigil alert test` on {host} at {now:%Y-%m-%d %H:%M} UTC. "
                                       "Nothing is wrong; it resolves by itself.",
                        "runbook_url": "docs/alerting.md"},
        "startsAt": now.isoformat(), "endsAt": (now + duration).isoformat(),
    }
    url = alertmanager.rstrip("/") + "/api/v2/alerts"
    try:
        response = httpx.post(url, json=[alert], timeout=10, verify=ssl_context(ca_file))
    except httpx.HTTPError as exc:
        raise AlertTestError(f"cannot reach Alertmanager at {alertmanager}: {certificate_refusal(exc) or exc}") \
            from None
    if response.status_code != 200:
        raise AlertTestError(f"Alertmanager at {alertmanager} refused the alert: HTTP {response.status_code} "
                             f"{shorten(response.text.strip(), 200)}")
    reaches = "on-call" if severity == "critical" else "the daytime receiver (during office hours, with the " \
                                                        "shipped routing: outside them it is never sent)"
    return (f"sent {ALERTNAME} (severity {severity}) to {alertmanager}; it should reach {reaches} within "
            f"Alertmanager's group_wait, and resolve after {int(duration.total_seconds() // 60)} min")
