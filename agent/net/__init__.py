"""Transports shared by the kinds: HTTP (httpx) and SSH (paramiko)."""
