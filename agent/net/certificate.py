"""What a certificate file says: when it expires (the agent's own endpoint, and any TLS server it probes)."""

from __future__ import annotations

from pathlib import Path


def certificate_expiry(cert_file: Path) -> float:
    """When the file's (first) PEM certificate expires, as a Unix time; ValueError when it holds none."""
    from cryptography import x509  # only for a TLS endpoint (paramiko brings it)

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.not_valid_after_utc.timestamp()
