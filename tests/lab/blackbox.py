"""Debian's prometheus-blackbox-exporter on a free loopback port, with modules the test writes:
the comparison peer for vigil's service probes.

It probes only when asked: `probe(target, module)` is one GET of /probe, and its metrics
(probe_success, probe_ssl_earliest_cert_expiry, probe_http_status_code...) come back as a
dict. Note what its `probe_ssl_earliest_cert_expiry` is: the earliest not-after of every
certificate the server sent, which is the intermediate's when that expires first.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.lab.harness import Peer, free_port, http_get, need, running


@dataclass(frozen=True)
class Blackbox:
    url: str
    peer: Peer

    def probe(self, target: str, module: str) -> dict[str, float]:
        """One probe: each unlabelled sample of its answer by name (labelled ones as name{labels})."""
        query = urllib.parse.urlencode({"target": target, "module": module})
        status, body = http_get(f"{self.url}/probe?{query}", timeout=30)
        if status != 200:
            raise AssertionError(f"blackbox_exporter /probe?{query}: {status} {body[:300]!r}")
        samples = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples


@contextmanager
def blackbox(directory: Path, modules: dict[str, dict]) -> Iterator[Blackbox]:
    """blackbox_exporter with these modules (blackbox.yml's `modules:`)."""
    binary = need("prometheus-blackbox-exporter", "run tests/lab/setup.sh (prometheus-blackbox-exporter)")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "blackbox.yml"
    config.write_text(yaml.safe_dump({"modules": modules}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
    with running(argv, directory / "blackbox.log", lambda: http_get(f"{url}/-/healthy")[0] == 200,
                 "blackbox_exporter") as peer:
        yield Blackbox(url, peer)
