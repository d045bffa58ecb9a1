"""A real VictoriaMetrics (single node, Debian's) on a free loopback port: the central store that
Prometheus agents remote-write to, answering PromQL on the Prometheus query API.

Deduplication keeps one sample per series per `-dedup.minScrapeInterval`; it merges only
series whose labels are all equal, so an HA pair's `replica` label must be dropped on the
way in (`drop_labels`, a `-relabelConfig` of labeldrop) for the pair to become one series.
Fresh samples are queryable at once (`-search.latencyOffset=0s`, no response cache, and
`/internal/force_flush` before each query), where the defaults hide the last 30 seconds
and a new series for another 5.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.lab.harness import free_port, http_get, need, running
from tests.lab.prometheus import Prometheus


class VictoriaMetrics(Prometheus):
    """Queried as a Prometheus is (`query`, `wait_for`), what it was sent searchable first."""

    def query(self, expr: str) -> list[dict]:
        http_get(f"{self.url}/internal/force_flush")  # else a new series is searchable ~5 s after it arrives
        return super().query(expr)

    @property
    def write_url(self) -> str:
        """Where Prometheus remote_write sends (`remote_write: [{"url": write_url}]`)."""
        return f"{self.url}/api/v1/write"


@contextmanager
def victoria_metrics(directory: Path, dedup_interval: str = "1s",
                     drop_labels: tuple[str, ...] = ()) -> Iterator[VictoriaMetrics]:
    binary = need("victoria-metrics", "run tests/lab/setup.sh (victoria-metrics)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [binary, f"-storageDataPath={directory / 'data'}", f"-httpListenAddr=127.0.0.1:{port}",
            f"-dedup.minScrapeInterval={dedup_interval}", "-search.latencyOffset=0s", "-search.disableCache",
            "-memory.allowedPercent=5"]
    if drop_labels:
        relabel = directory / "relabel.yml"
        relabel.write_text(yaml.safe_dump([{"action": "labeldrop", "regex": "|".join(drop_labels)}]))
        argv.append(f"-relabelConfig={relabel}")
    url = f"http://127.0.0.1:{port}"
    with running(argv, directory / "victoria-metrics.log", lambda: http_get(f"{url}/health")[0] == 200,
                 "VictoriaMetrics"):
        yield VictoriaMetrics(url)
