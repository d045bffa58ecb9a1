"""Real peers on loopback for the integration tests (see tests/lab/README.md)."""
