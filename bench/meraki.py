"""API calls per cycle, peak request rate per organization and cycle wall time of kind: meraki.

Runs the collector against the Dashboard API contract fake (tests/fakes/meraki.py) on
loopback HTTPS, one organization of each size, every endpoint group on unless
--default-groups. The fake enforces Meraki's 10 requests/s per organization; the
collector spends its configured share (default 5/s). Calls per cycle should be the same
for every size but for pages (1,000 devices a page; bySwitch pages hold 20 switches).

    python bench/meraki.py [--sizes 50:5,5000:500] [--rps 5] [--default-groups] [--cycles 2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import Clock  # noqa: E402
from agent.collector import Context, run_once  # noqa: E402
from agent.ratelimit import RateLimits  # noqa: E402
from agent.statedb import StateDB  # noqa: E402
from tests.collector_kit import build  # noqa: E402
from tests.fakes.meraki import MerakiFake, make_org  # noqa: E402
from tests.lab.pki import make_pki  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50:5,5000:500", help="devices:networks,... one organization each")
    parser.add_argument("--rps", type=float, default=5.0, help="requests_per_second of the target")
    parser.add_argument("--cycles", type=int, default=2, help="cycles per size (the first one is shown too)")
    parser.add_argument("--default-groups", action="store_true", help="leave the optional groups off")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-meraki-"))
    pki = make_pki(work / "pki")
    (work / "key").write_text("test-key\n")
    optional = {} if args.default_groups else {"wireless_channel_utilization": True, "switch_port_statuses": True,
                                                "assurance_alerts": True}
    print(f"requests_per_second={args.rps:g}, groups={'default' if args.default_groups else 'all'}")
    print(f"{'devices':>8} {'networks':>8} {'cycle':>5} {'calls':>6} {'429s':>5} {'peak/s':>7} {'wall s':>7}  "
          "calls by endpoint")
    for size in args.sizes.split(","):
        devices, networks = (int(part) for part in size.split(":"))
        org = make_org("700001", "Bench", networks=networks, devices=devices)
        with MerakiFake(pki, [org]) as fake:
            target = {"name": "bench", "kind": "meraki", "api_key": f"${{file:{work / 'key'}}}",
                      "base_url": fake.url, "ca_file": str(pki.ca), "requests_per_second": args.rps,
                      "timeout": "55s", **optional}
            clock = Clock()
            db = StateDB(work / f"state-{devices}")
            context = Context(clock, RateLimits(clock), work / f"state-{devices}", db, kind="meraki", target="bench")
            for cycle in range(1, args.cycles + 1):
                before = len(fake.calls())
                started = time.perf_counter()
                out = asyncio.run(run_once(build(target, context), strict=True))
                wall = time.perf_counter() - started
                calls = fake.calls()[before:]
                by_path = collections.Counter(seen.path.removeprefix("/organizations/{org}/") for seen in calls)
                first = calls[0].at if calls else 0
                peak = _peak([seen.at for seen in calls if seen.org == org.id and seen.at >= first])
                throttled = sum(1 for seen in calls if seen.status == 429)
                failed = f"  FAILED {sorted(out.errors)}" if out.errors else ""
                print(f"{devices:>8} {networks:>8} {cycle:>5} {len(calls):>6} {throttled:>5} {peak:>7} {wall:>7.2f}  "
                      + ", ".join(f"{path} {count}" for path, count in sorted(by_path.items())) + failed)
            db.close()


def _peak(times: list[float], window: float = 1.0) -> int:
    times.sort()
    peak, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


if __name__ == "__main__":
    main()
