"""The probe kinds' fixtures: their lab peers (tests/lab/: nginx, dnsmasq, PostgreSQL, ...) and each kind's
conformance target."""

from __future__ import annotations
