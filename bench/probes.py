"""Service probes on one core: 1,000 probes per 60 s cycle, and CPU per probe next to blackbox_exporter's.

A real `vigil run`, pinned to one CPU, probes the lab's nginx (tests/lab/nginx.py): --probes
targets, the kinds in turn (http, https with its chain and TLS versions, tcp connect), every
--interval seconds. https is verified as most targets are, with the system's CA bundle (no
ca_file): SSL_CERT_FILE is that bundle with the lab's CA added, for vigil and blackbox_exporter.
After the first cycle (where each https target also finds the oldest TLS version it accepts,
once an hour) one cycle is measured: the agent's CPU seconds (from /proc), the probes that
started late (a second or more after they were due, read from /status.json's next_run before
and last_run after; 90% of a cycle, so that none is counted twice), those skipped or down, the
probes' durations, the peak RSS; then the CPU of one scrape of /metrics with every target on it.

Then, per kind, CPU per probe next to blackbox_exporter's (Debian's, tests/lab/blackbox.py),
pinned to the same CPU, on the same targets: vigil probes --compare targets every
--compare-interval seconds for --compare-seconds, and blackbox_exporter's /probe is asked for
each target as many times, 8 at a time; each process's CPU is read from /proc. Its figure
includes answering /probe (it probes only when scraped); vigil's does not include a scrape.
Prints a table.

    python bench/probes.py [--probes 1000] [--interval 60] [--compare 100] [--compare-interval 5]
                           [--compare-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.procfs import cpu_seconds, peak_rss_mib, rss_mib  # noqa: E402
from tests.lab.blackbox import blackbox  # noqa: E402
from tests.lab.harness import Peer, free_port, http_get  # noqa: E402
from tests.lab.nginx import Nginx, nginx  # noqa: E402

LATE = 1.0  # seconds after its due time a probe counts as late (status.json's times are whole seconds)
WINDOW = 0.9  # of a cycle, measured: a probe due in it runs in it once, not again (the jitter is 5%)


@dataclass(frozen=True)
class Kind:
    """One way to probe the lab's nginx, for vigil and for blackbox_exporter alike."""

    name: str
    target: Callable[[Nginx], dict]  # vigil's target fields, without name and interval
    module: Callable[[Nginx], dict]  # blackbox_exporter's module
    address: Callable[[Nginx], str]  # blackbox_exporter's ?target=


KINDS = (
    Kind("http", lambda lab: {"kind": "http", "url": lab.url()},
         lambda lab: {"prober": "http", "timeout": "5s"}, lambda lab: lab.url()),
    Kind("https", lambda lab: {"kind": "http", "url": lab.url("good")},
         lambda lab: {"prober": "http", "timeout": "5s"}, lambda lab: lab.url("good")),
    Kind("tcp", lambda lab: {"kind": "tcp", "host": "127.0.0.1", "port": lab.http_port},
         lambda lab: {"prober": "tcp", "timeout": "5s"}, lambda lab: f"127.0.0.1:{lab.http_port}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000, help="probe targets in the cycle measured")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between a target's probes")
    parser.add_argument("--compare", type=int, default=100, help="targets per kind in the comparison")
    parser.add_argument("--compare-interval", type=float, default=5.0)
    parser.add_argument("--compare-seconds", type=float, default=30.0)
    args = parser.parse_args()
    cpu = max(os.sched_getaffinity(0))
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="vigil-bench-probes-") as tmp, nginx(Path(tmp) / "nginx") as lab:
        os.environ["SSL_CERT_FILE"] = str(system_store(Path(tmp), lab))  # for the agents and blackbox_exporter
        print(f"nginx on 127.0.0.1, vigil and blackbox_exporter pinned to CPU {cpu}", flush=True)
        targets = [{"name": f"{KINDS[n % len(KINDS)].name}-{n}", **KINDS[n % len(KINDS)].target(lab)}
                   for n in range(args.probes)]
        with agent(Path(tmp) / "cycle", targets, args.interval, cpu) as (url, pid):
            rows += cycle(url, pid, len(targets), args.interval)
        for kind in KINDS:
            rows.append(compare(Path(tmp) / f"compare-{kind.name}", lab, kind, args, cpu))
    print()
    print(table(rows))


# --- the cycle --------------------------------------------------------------------------------------

COLUMNS = ("measure", "vigil", "blackbox_exporter")


def cycle(url: str, pid: int, count: int, interval: float) -> list[tuple[str, ...]]:
    """The first cycle, then one whole cycle measured; rows of figures."""
    started = time.monotonic()
    wait_for(lambda: all(job["last_run"] for job in status(url)["jobs"]), interval * 3, "every probe's first run")
    first, first_down = time.monotonic() - started, down(status(url))
    time.sleep(interval * 0.2)  # past the tail of the first cycle's jitter
    before, cpu_before, at = status(url), cpu_seconds(pid), time.monotonic()
    print(f"first cycle done in {first:.0f} s; measuring {WINDOW:.0%} of a cycle of {interval:g} s", flush=True)
    time.sleep(interval * WINDOW)
    cpu = cpu_seconds(pid) - cpu_before
    seconds = time.monotonic() - at
    after = status(url)
    lateness, durations, skipped = runs(before, after)
    scrape_before = cpu_seconds(pid)
    exposition = http_get(url + "/metrics", timeout=60)[1]
    scrape = cpu_seconds(pid) - scrape_before
    late = [value for value in lateness if value >= LATE]
    per_cycle = cpu * interval / seconds
    return [
        (f"{count} probes every {interval:g} s: CPU s per cycle", f"{per_cycle:.2f} ({per_cycle / interval:.1%} "
         "of a core)", ""),
        ("CPU ms per probe", f"{per_cycle / count * 1000:.2f}", ""),
        (f"probes that ran in the cycle / late (>= {LATE:g} s after due)", f"{len(lateness)} / {len(late)}", ""),
        ("lateness p50 / max (s)", f"{_quantile(lateness, 0.5):.0f} / {max(lateness, default=0):.0f}", ""),
        ("probe duration p50 / p99 / max (ms)", " / ".join(f"{_quantile(durations, q) * 1000:.0f}"
                                                           for q in (0.5, 0.99, 1.0)), ""),
        ("runs skipped / probes down", f"{skipped} / {len(down(after))}", ""),
        (f"first cycle (all {count} start within 5 s; https finds its oldest TLS version): "
         "seconds / probes down", f"{first:.0f} / {len(first_down)}", ""),
        (f"one scrape of /metrics ({len(exposition) // 1024} KiB): CPU ms", f"{scrape * 1000:.0f}", ""),
        ("peak RSS (MiB) / RSS now", f"{peak_rss_mib(pid):.0f} / {rss_mib(pid):.0f}", ""),
    ]


def down(document: dict) -> list[str]:
    return [board["name"] for board in document["boards"].get("Services", []) if board["status"] != "ok"]


def runs(before: dict, after: dict) -> tuple[list[float], list[float], int]:
    """Of each probe due between the two snapshots and run since: how late it started; each one's duration;
    the runs skipped in between."""
    due = {job["name"]: job["next_run"] for job in before["jobs"]}
    skipped_before = {job["name"]: job["skipped_total"] for job in before["jobs"]}
    lateness, durations, skipped = [], [], 0
    for job in after["jobs"]:
        skipped += job["skipped_total"] - skipped_before.get(job["name"], 0)
        if due.get(job["name"]) and job["last_run"] and job["last_run"] >= due[job["name"]]:
            lateness.append(max(0.0, _epoch(job["last_run"]) - _epoch(due[job["name"]])))
            durations.append(job["last_duration_seconds"])
    return lateness, durations, skipped


# --- vigil next to blackbox_exporter ------------------------------------------------------------------

def compare(directory: Path, lab: Nginx, kind: Kind, args: argparse.Namespace, cpu: int) -> tuple[str, ...]:
    """CPU ms per probe of one kind: vigil on its schedule, then blackbox_exporter asked as many times."""
    targets = [{"name": f"{kind.name}-{n}", **kind.target(lab)} for n in range(args.compare)]
    probes = round(args.compare * args.compare_seconds / args.compare_interval)
    with agent(directory / "vigil", targets, args.compare_interval, cpu) as (url, pid):
        wait_for(lambda: all(job["last_run"] for job in status(url)["jobs"]), 60, "every probe's first run")
        time.sleep(args.compare_interval * 1.5)  # past the first runs (the oldest TLS version found)
        before = cpu_seconds(pid)
        time.sleep(args.compare_seconds)
        ours = (cpu_seconds(pid) - before) / probes
    with blackbox(directory / "blackbox", {kind.name: kind.module(lab)}) as exporter:
        pin(exporter.peer.pid, cpu)
        address = kind.address(lab)
        exporter.probe(address, kind.name)  # warm
        before = cpu_seconds(exporter.peer.pid)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: exporter.probe(address, kind.name)["probe_success"], range(probes)))
        theirs = (cpu_seconds(exporter.peer.pid) - before) / probes
    assert all(answers), f"blackbox_exporter: {answers.count(0.0)} of {probes} {kind.name} probes failed"
    print(f"{kind.name}: vigil {ours * 1000:.2f} ms, blackbox_exporter {theirs * 1000:.2f} ms CPU per probe "
          f"({probes} probes each)", flush=True)
    return (f"{kind.name}: CPU ms per probe ({probes} probes each)", f"{ours * 1000:.2f}", f"{theirs * 1000:.2f}")


# --- the agent, /proc and the table ---------------------------------------------------------------------

@contextmanager
def agent(directory: Path, targets: list[dict], interval: float, cpu: int) -> Iterator[tuple[str, int]]:
    """`vigil run` on these targets every `interval` s, pinned to `cpu`: its URL and pid."""
    directory.mkdir(parents=True)
    listen = f"127.0.0.1:{free_port()}"
    timeout = min(10.0, interval * 0.8)
    config = directory / "vigil.yaml"
    config.write_text(yaml.safe_dump({"listen": listen, "state_dir": str(directory / "state"), "targets": [
        {**target, "interval": f"{interval:g}s", "timeout": f"{timeout:g}s"} for target in targets]}))
    peer = Peer(["taskset", "-c", str(cpu), sys.executable, "-m", "agent.cli", "run", "-c", str(config)],
                directory / "agent.log", cwd=ROOT)
    try:
        wait_for(lambda: _ready(listen) if peer.alive() else _exited(peer), 120, "the agent to be ready", peer)
        yield f"http://{listen}", peer.pid
    finally:
        peer.stop()


def system_store(directory: Path, lab: Nginx) -> Path:
    """The system's CA bundle with the lab's root CA added: as big as the system's, and it trusts nginx."""
    paths = ssl.get_default_verify_paths()
    bundle = directory / "ca-bundle.pem"
    bundle.write_text(Path(paths.cafile or paths.openssl_cafile).read_text() + lab.ca.read_text())
    return bundle


def pin(pid: int, cpu: int) -> None:
    """Every thread of a running process onto one CPU (the threads it makes later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def status(url: str) -> dict:
    return json.loads(http_get(url + "/status.json", timeout=60)[1])


def wait_for(check: Callable[[], object], timeout: float, what: str, peer: Peer | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:g} s" + (f"\n{peer.output()[-2000:]}" if peer else ""))
        time.sleep(0.5)  # polling the agent, bounded by `timeout`


def _ready(listen: str) -> bool:
    try:
        return http_get(f"http://{listen}/-/ready", timeout=2)[0] == 200
    except OSError:
        return False


def _exited(peer: Peer) -> bool:
    raise SystemExit(f"the agent exited:\n{peer.output()[-2000:]}")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if q < 1 else ordered[-1]


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (COLUMNS, *rows)) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True))) for r in (COLUMNS, *rows)]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


if __name__ == "__main__":
    main()
