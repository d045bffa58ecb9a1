"""kind: vmware against vcsim at 50 hosts / 2,000 VMs and 200 hosts / 10,000 VMs.

Prints, per size: the inventory run's wall time (the main signal: one paged
PropertyCollector read plus the samples), the perf signal's (batched QueryPerf), round
trips per run, the process's peak RSS, and the floor: the bare bulk PropertyCollector
read of the same properties with nothing made of it, with the CPU time vcsim and the
client spent on it, and the same read parsed by pyvmomi's own deserializer. The session
is opened first (a login is not part of a run, as the agent keeps it). The load average
is printed too: the figures stretch on a busy machine. Needs the lab's vcsim
(tests/lab/setup.sh).

    python bench/vmware.py [--runs 3] [--sizes 50x2000,200x10000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock  # noqa: E402
from agent.collector import Context, Emitter  # noqa: E402
from agent.ratelimit import RateLimits  # noqa: E402
from agent.statedb import StateDB  # noqa: E402
from collectors.vmware import inventory  # noqa: E402
from tests import collector_kit as kit  # noqa: E402
from tests.lab.vcsim import PASSWORD, start_vcsim  # noqa: E402

CLUSTER_HOSTS = 10


def vcsim_args(hosts: int, vms: int) -> list[str]:
    clusters = hosts // CLUSTER_HOSTS
    return ["-dc", "1", "-cluster", str(clusters), "-host", str(CLUSTER_HOSTS), "-standalone-host", "0",
            "-vm", str(vms // clusters), "-ds", "4"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pyvmomi_read(session, specs, page: int) -> int:
    """The same read parsed by pyvmomi's own deserializer, for comparison."""
    from pyVmomi import vim, vmodl

    pc = vmodl.query.PropertyCollector
    traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=session.view, skip=True, selectSet=[traverse])],
                         propSet=specs)
    collector = session.content.propertyCollector
    result = collector.RetrievePropertiesEx([spec], pc.RetrieveOptions(maxObjects=page))
    count = len(result.objects)
    while result.token:
        result = collector.ContinueRetrievePropertiesEx(result.token)
        count += len(result.objects)
    return count


def timed(work, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(directory: Path, hosts: int, vms: int, runs: int) -> None:
    started = time.perf_counter()
    with start_vcsim(directory, *vcsim_args(hosts, vms), timeout=300) as sim:
        startup = time.perf_counter() - started
        db = StateDB(directory / "state")
        clock = Clock()
        ctx = Context(clock, RateLimits(clock), directory / "state", db)
        collector = kit.build(sim.target(event_types=[]), ctx)
        collector.open()
        try:
            def run(signals: frozenset[str]) -> tuple[int, int]:
                before = sum(ctx.api.requests().values())
                out = Emitter(collector.METRICS, ctx.api, collector.signals(), strict=True)
                collector.collect(out, signals)
                assert not out.errors, out.errors
                return sum(ctx.api.requests().values()) - before, sum(len(out.samples(s)) for s in out.ran)

            specs = inventory.prop_specs(True)
            session = collector.session
            server_cpu, client_cpu = cpu_seconds(sim.peer.pid), time.process_time()
            floor, objects = timed(lambda: sum(1 for _ in session.retrieve(specs, collector.config.page_size)),
                                   runs)
            server_cpu = (cpu_seconds(sim.peer.pid) - server_cpu) / runs
            client_cpu = (time.process_time() - client_cpu) / runs
            main, (main_trips, main_samples) = timed(lambda: run(frozenset({"main"})), runs)
            both, (both_trips, both_samples) = timed(lambda: run(frozenset({"main", "perf"})), runs)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before pyvmomi's objects
            pyvmomi, _ = timed(lambda: pyvmomi_read(session, specs, collector.config.page_size), runs)
        finally:
            collector.close()
            db.close()
    print(f"{hosts} hosts / {vms} VMs (vcsim up in {startup:.1f}s, {objects} objects read)")
    print(f"  floor: bare PropertyCollector read   {floor:6.3f} s  (CPU: vcsim {server_cpu:.3f} s, "
          f"client {client_cpu:.3f} s)")
    print(f"  the same read parsed by pyvmomi      {pyvmomi:6.3f} s")
    print(f"  inventory run (main)                 {main:6.3f} s  {main / floor:4.2f}x floor  "
          f"{main_trips} round trips  {main_samples} samples")
    print(f"  inventory + perf run                 {both:6.3f} s  {both_trips} round trips  {both_samples} samples")
    print(f"  peak RSS of this process             {rss:6.1f} MiB  (load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="50x2000,200x10000")
    args = parser.parse_args()
    os.environ["VIGIL_TEST_VCENTER_PASSWORD"] = PASSWORD
    with tempfile.TemporaryDirectory(prefix="vigil-bench-vmware-") as tmp:
        for size in args.sizes.split(","):
            hosts, vms = map(int, size.split("x"))
            bench(Path(tmp) / size, hosts, vms, args.runs)


if __name__ == "__main__":
    main()
