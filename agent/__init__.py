"""vigil agent core: config, scheduler, store, lifecycle and CLI."""

__version__ = "0.1.0"
PACKAGES = ("agent", "collectors", "checks", "exporters")  # vigil's own: its errors, its loggers
