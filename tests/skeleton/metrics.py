"""What `kind: counting` emits, and the alert rules about it (none)."""

from agent.model import MetricSpec

TICKS = MetricSpec("vigil_test_ticks", "gauge", "Runs so far.")

METRICS = (TICKS,)
CONDITIONS = ()
