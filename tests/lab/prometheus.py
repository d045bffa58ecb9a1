"""A real Prometheus on loopback that scrapes given targets every second; or one in agent mode
(`agent=True`: no local queries or rules, it only scrapes and remote-writes, as a site's
Prometheus in front of a central store)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.lab.harness import free_port, http_get, need, running, wait_until


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def query(self, expr: str) -> list[dict]:
        status, body = http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        reply = json.loads(body)
        if status != 200 or reply.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {reply.get('error', body[:300])}")
        return reply["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict]:
        return wait_until(lambda: self.query(expr), timeout, f"Prometheus to return data for {expr}")


@contextmanager
def prometheus(tmp_path: Path, scrape_configs: list[dict], rule_files: list[str] = (),
               extra: dict | None = None, agent: bool = False,
               external_labels: dict[str, str] | None = None) -> Iterator[Prometheus]:
    """`extra`: more top-level config (remote_write: [{"url": ...}]); `external_labels` go on
    everything it sends (`site`, `replica`)."""
    binary = need("prometheus")
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                         "external_labels": external_labels or {}},
              "scrape_configs": scrape_configs, "rule_files": list(rule_files), **(extra or {})}
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    storage = ["--enable-feature=agent", f"--storage.agent.path={tmp_path / 'wal'}"] if agent \
        else [f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    argv = [binary, f"--config.file={config_file}", *storage, f"--web.listen-address=127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with running(argv, tmp_path / "prometheus.log", lambda: http_get(f"{url}/-/ready")[0] == 200,
                 "Prometheus"):
        yield Prometheus(url)
