"""A real Alertmanager on loopback, and a webhook receiver that records what it is sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from tests.lab.harness import free_port, http_get, need, running


class Webhook:
    """Collects Alertmanager notifications: (receiver path, payload, arrival time)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict, float]] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                webhook.received.append((self.path.strip("/"), json.loads(body), time.monotonic()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def alerts(self, receiver: str, status: str, alertname: str) -> list[tuple[dict, float]]:
        return [(alert, at) for path, payload, at in self.received if path == receiver
                for alert in payload["alerts"]
                if alert["status"] == status and alert["labels"]["alertname"] == alertname]

    def close(self) -> None:
        self._server.shutdown()


def routed_to(webhook: Webhook, shipped: Path, timing: dict) -> dict:
    """The shipped routing with every receiver replaced by a webhook to `webhook`/<receiver name>."""
    config = yaml.safe_load(shipped.read_text())
    config.pop("global", None)
    config["route"].update(timing)
    config["receivers"] = [{"name": receiver["name"],
                            "webhook_configs": [{"url": f"{webhook.url}/{receiver['name']}", "send_resolved": True}]}
                           for receiver in config["receivers"]]
    return config


@contextmanager
def alertmanager(directory: Path, config: dict) -> Iterator[str]:
    binary = need("prometheus-alertmanager")
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [binary, f"--config.file={config_file}", f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]  # no cluster port 9094
    with running(argv, directory / "alertmanager.log", lambda: http_get(f"{url}/-/ready")[0] == 200,
                 "Alertmanager"):
        yield url
