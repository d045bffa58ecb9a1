"""The one exception of the probes, apart so that every protocol module may raise it without importing the
kinds that import them (collector.py)."""


class ProbeFailed(Exception):
    """The service did not answer as expected; the text is the reason, for people."""
