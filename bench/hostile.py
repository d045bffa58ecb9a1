"""Peak memory of `vigil once --target` against hostile twins of the API fakes.

Each case starts a contract fake (tests/fakes) in this process, makes it hostile
(tests/fakes/hostile.py, or its endless pages), and runs `vigil once --target` on one
target as a child, whose own peak RSS wait4 reports. The child gets an address-space
limit (`--cap`), so that a version without bounds fails with MemoryError instead of taking
the machine: a peak near the cap means "at least this much".

    python bench/hostile.py                      # every case
    python bench/hostile.py bomb graph-loop      # some
    python bench/hostile.py --bomb 10GiB --page 24MiB --cap 6GiB

Cases: `bomb` (the authority's discovery document as a gzip bomb), `discovery-500MB` and
`token-500MB` (a body of 500 MB), `graph-loop` (a 24 MiB applications page whose next
link names itself), `meraki-loop` (the same for Meraki's /organizations).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.units import parse_size  # noqa: E402
from bench.procfs import Measured, run_measured  # noqa: E402
from tests.fakes.graph import GraphFake  # noqa: E402
from tests.fakes.hostile import gzip_bomb, huge  # noqa: E402
from tests.fakes.meraki import MerakiFake, make_org  # noqa: E402
from tests.lab.pki import PKI, make_pki  # noqa: E402

TENANT = "7d6f2c1e-52a4-4f0e-9b1c-3a5e8d9f0a11"
CLIENT_ID = "0e1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"
SECRET = "bench~secret"
MERAKI_KEY = "bench-key"
TIMEOUT = "20s"  # the job's: what ends a run that has no bound of its own


def m365(pki: PKI, directory: Path, hostile: Callable[[GraphFake], None]) -> tuple[GraphFake, dict]:
    fake = GraphFake(pki, tenant=TENANT, client_id=CLIENT_ID, client_secret=SECRET)
    hostile(fake)
    (directory / "secret").write_text(SECRET)
    return fake, {"name": "m365", "kind": "m365", "tenant_id": TENANT, "client_id": CLIENT_ID,
                  "client_secret": f"${{file:{directory / 'secret'}}}", "authority": fake.url,
                  "graph_url": fake.url, "ca_file": str(pki.ca), "timeout": TIMEOUT, "interval": "1m"}


def meraki(pki: PKI, directory: Path, page: int) -> tuple[MerakiFake, dict]:
    fake = MerakiFake(pki, [make_org("549236", "Loop", networks=2, devices=6)], {MERAKI_KEY: ["549236"]})
    fake.endless("/organizations", page, repeat=True)
    (directory / "key").write_text(MERAKI_KEY)
    return fake, {"name": "meraki", "kind": "meraki", "api_key": f"${{file:{directory / 'key'}}}",
                  "base_url": fake.url, "ca_file": str(pki.ca), "timeout": TIMEOUT, "interval": "1m"}


def cases(bomb: int, page: int) -> dict[str, tuple[str, Callable[[PKI, Path], tuple]]]:
    discovery = f"/{TENANT}/v2.0/.well-known/openid-configuration"
    token = f"/{TENANT}/oauth2/v2.0/token"  # noqa: S105 — a URL path
    return {
        "bomb": (f"authority: a gzip bomb inflating to {bomb >> 20} MiB as the discovery document",
                 lambda pki, d: m365(pki, d, lambda fake: fake.hostile(discovery, gzip_bomb(bomb)))),
        "discovery-500MB": ("authority: a 500 MB discovery document",
                            lambda pki, d: m365(pki, d, lambda fake: fake.hostile(discovery, huge(500_000_000)))),
        "token-500MB": ("authority: a 500 MB token answer",
                        lambda pki, d: m365(pki, d, lambda fake: fake.hostile(token, huge(500_000_000)))),
        "graph-loop": (f"Graph: a {page >> 20} MiB applications page whose next link names itself",
                       lambda pki, d: m365(pki, d, lambda fake: fake.endless("/v1.0/applications", page,
                                                                             repeat=True))),
        "meraki-loop": (f"Meraki: a {page >> 20} MiB /organizations page whose next link names itself",
                        lambda pki, d: meraki(pki, d, page)),
    }


def run(start: Callable[[PKI, Path], tuple], cap: int) -> tuple[Measured, str]:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-hostile-") as tmp:
        directory = Path(tmp)
        fake, target = start(make_pki(directory / "pki"), directory)
        config = directory / "vigil.yaml"
        config.write_text(yaml.safe_dump({"state_dir": str(directory / "state"), "targets": [target]}))
        with fake:
            measured = run_measured([sys.executable, "-m", "agent.cli", "once", "-c", str(config), "--target",
                                     target["name"], "--format", "json"], 300, memory_cap=cap, cwd=ROOT)
    return measured, reason(measured)


def reason(measured: Measured) -> str:
    """What the run said went wrong, in a line."""
    try:
        (job,) = json.loads(measured.stdout)
    except ValueError:
        return (measured.stderr.strip().splitlines() or ["no output"])[-1][:160]
    failed = [job["error"]] if job["error"] else [f"{s['name']}: {s['error']}" for s in job["signals"] if not s["ok"]]
    return ("; ".join(failed) or "ok")[-160:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="cases to run (default: all)")
    parser.add_argument("--bomb", default="10GiB", help="what the gzip bomb inflates to (default 10GiB)")
    parser.add_argument("--page", default="24MiB", help="the looping page's size (default 24MiB)")
    parser.add_argument("--cap", default="6GiB", help="the child's address-space limit (default 6GiB)")
    args = parser.parse_args()
    chosen = cases(parse_size(args.bomb), parse_size(args.page))
    cap = parse_size(args.cap)
    print("| case | exit | seconds | peak RSS | what the run said |\n|---|---|---|---|---|")
    for name in args.cases or chosen:
        title, start = chosen[name]
        measured, said = run(start, cap)
        print(f"| {title} | {measured.returncode} | {measured.seconds:.1f} | {measured.peak_mib:.0f} MiB | "
              f"{said.replace('|', '/')} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
