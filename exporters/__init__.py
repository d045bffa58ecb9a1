"""Prometheus exposition, the web endpoint, and the landing/status pages."""
