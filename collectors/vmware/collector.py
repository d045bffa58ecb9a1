"""`kind: vmware`: a vCenter (or a lone ESXi host) read with pyvmomi in a few round trips.

The session is made in `open()` and reused by every run; the inventory is one paged
PropertyCollector read over a ContainerView (collectors/vmware/inventory.py), the
performance counters a signal of their own (a QueryPerf failure keeps the inventory),
the hardware sensors and the events slow signals. pyvmomi blocks: the agent runs these
methods in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.collector import MAIN, Collector, Context, Emitter, Signal
from collectors.vmware import inventory, perf
from collectors.vmware.config import VMwareConfig
from collectors.vmware.events import EventCounts
from collectors.vmware.metrics import CONDITIONS, EVENTS, HOST_PERF, METRICS, VM_PERF
from collectors.vmware.session import Session


class VMwareCollector(Collector[VMwareConfig]):
    """Blocking (pyvmomi): open, collect and close run in the job's thread."""

    Config = VMwareConfig
    CONCURRENCY = 4
    SIGNALS: Mapping[str, Signal] = {
        MAIN: Signal(help="inventory and state: one paged PropertyCollector read"),
        "perf": Signal(help="realtime performance counters (QueryPerf)"),
        "sensors": Signal(every=300, help="hosts' hardware sensors"),
        "events": Signal(every=600, help="counts of recent events (QueryEvents)"),
    }

    METRICS = METRICS
    CONDITIONS = CONDITIONS

    def __init__(self, config: VMwareConfig, ctx: Context):
        super().__init__(config, ctx)
        self.session = Session(config.host, config.port, config.user, config.password.get_secret_value(),
                               str(config.ca_file) if config.ca_file else None, not config.insecure_skip_verify,
                               ctx.timeout, ctx.api)
        self.filters = inventory.Filters(config.datacenters, config.clusters, config.include, config.exclude)
        self.perf = perf.Catalogue(config.perf_counters)
        self.events = EventCounts(config.event_types)

    def signals(self) -> Mapping[str, Signal]:
        signals = {MAIN: self.SIGNALS[MAIN],
                   "sensors": Signal(every=self.config.sensors_every, help=self.SIGNALS["sensors"].help)}
        if self.config.perf_counters:
            signals["perf"] = self.SIGNALS["perf"]
        if self.config.event_types:
            signals["events"] = Signal(every=self.config.events_every, help=self.SIGNALS["events"].help)
        return signals

    def open(self) -> None:
        self.session.login()

    def collect(self, out: Emitter, due: frozenset[str]) -> None:
        config, session = self.config, self.session
        inv = inventory.Inventory()

        def read() -> None:
            inv.objects.clear()
            for obj, props in session.retrieve(inventory.prop_specs(config.vm_metrics), config.page_size):
                inv.add(obj, props)

        session.call(read)
        selected = inventory.emit(out, inv, self.filters, config.vm_metrics, self.ctx.clock.time())
        if "sensors" in due:
            with out.signal("sensors"):
                hosts = session.call(lambda: list(session.retrieve(inventory.sensor_specs(), config.page_size)))
                inventory.emit_sensors(out, hosts, selected.host_ids)
        if "perf" in due and "perf" in self.signals():
            with out.signal("perf"):
                entities = selected.hosts + selected.vms
                values = session.call(lambda: perf.query(session, self.perf.resolve(session), entities,
                                                         config.perf_batch, config.perf_parallel))
                hosts = {obj._moId: name for obj, name in selected.hosts}
                vms = {obj._moId: name for obj, name in selected.vms}
                for ref, counter, value in values:
                    if ref in hosts:
                        out.gauge(HOST_PERF, value, host=hosts[ref], counter=counter)
                    elif ref in vms:
                        out.gauge(VM_PERF, value, vm=vms[ref], counter=counter)
        if "events" in due and "events" in self.signals():
            with out.signal("events"):
                for (kind, user), count in sorted(session.call(lambda: self.events.poll(session)).items()):
                    out.counter(EVENTS, count, type=kind, user=user)

    def close(self) -> None:
        self.session.close()
