"""What `kind: nut` emits: the `vigil_ups_*` families of collectors.ups.metrics (a UPS is a UPS, however it is
polled), but for the line failure counter, which NUT has no variable for; and the same rules."""

from collectors.ups import metrics as ups

METRICS = tuple(spec for spec in ups.METRICS if spec is not ups.LINE_FAILURES)
CONDITIONS = ups.CONDITIONS
