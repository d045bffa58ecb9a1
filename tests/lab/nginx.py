"""A real nginx on loopback: one plain HTTP server and one HTTPS server per certificate case,
all with the same routes for the HTTP probe, in one nginx process.

The certificates come from tests/lab/pki.py: a root CA (the only one a client trusts), an
intermediate CA, and leaves it issued, which the servers send with the intermediate as
public CAs' customers do. Each case is one thing a TLS probe must name: a good chain, an
expired leaf, a leaf for another host, a leaf sent without its intermediate, a self-signed
leaf, an intermediate that expires before its leaf (blackbox_exporter's "earliest
certificate" reports the intermediate's date), and a good chain behind a server that still
offers TLS 1.0 and 1.1 (Debian's OpenSSL 3 refuses them below security level 0, on both
sides: a client must ask for `DEFAULT@SECLEVEL=0` too).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import Peer, free_port, http_get, need, running
from tests.lab.pki import faulty_server, intermediate_ca, make_pki

NGINX = "/usr/sbin/nginx"
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")  # libnginx-mod-http-echo: echo_sleep
USER, PASSWORD = "vigil", "nginx-lab-password"  # basic auth on /auth
TOKEN = "nginx-lab-token"  # bearer auth on /bearer
HEALTH = {"status": "ok", "checks": {"database": "up", "queue": "up"}, "version": "4.2.1"}
LEAF_DAYS, INTERMEDIATE_DAYS, SHORT_INTERMEDIATE_DAYS = 60, 365, 10
MODERN = "TLSv1.2 TLSv1.3"
# case -> (the leaf's fault for faulty_server, sent with the intermediate, issued by the short-lived one, protocols)
CASES = {
    "good": ("good", True, False, MODERN),
    "expired": ("expired", True, False, MODERN),
    "wrong host": ("wrong host", True, False, MODERN),
    "no intermediate": ("good", False, False, MODERN),
    "self-signed": ("self-signed", False, False, MODERN),
    "intermediate expires first": ("intermediate expires first", True, True, MODERN),
    "tls1.0": ("good", True, False, "TLSv1 TLSv1.1 TLSv1.2"),
}
ROUTES = f"""\
location = /health {{ default_type application/json; return 200 '{json.dumps(HEALTH)}'; }}
location = /error {{ return 500 "internal error\\n"; }}
location = /redirect {{ return 302 /health; }}
location = /loop {{ return 302 /loop; }}
location = /slow {{ echo_sleep $slow_seconds; echo "slow answer"; }}
location = /auth {{ auth_basic "vigil lab"; auth_basic_user_file htpasswd; echo "authenticated"; }}
location = /bearer {{
    if ($http_authorization != "Bearer {TOKEN}") {{ return 401 "bearer token required\\n"; }}
    echo "authenticated";
}}
location / {{ return 404 "not found\\n"; }}
"""


@dataclass(frozen=True)
class Nginx:
    """`http_port` serves plain HTTP; `ports[case]` HTTPS with that case's certificates. Every
    server answers /health (JSON, 200), /error (500), /redirect (302 to /health), /loop (302 to itself), /slow (after
    `?seconds=`, 2 by default), /auth (basic: USER, PASSWORD) and /bearer (TOKEN)."""

    http_port: int
    ports: dict[str, int]
    ca: Path  # the root CA: verifies every case but the broken ones
    served: dict[str, tuple[Path, ...]]  # the certificates each case sends, leaf first
    peer: Peer

    def url(self, case: str | None = None, path: str = "/health") -> str:
        """The URL of `path` on the HTTPS server of `case`, or on the plain HTTP server."""
        if case is None:
            return f"http://127.0.0.1:{self.http_port}{path}"
        return f"https://127.0.0.1:{self.ports[case]}{path}"


def certificates(directory: Path) -> tuple[Path, dict[str, tuple[Path, ...]], dict[str, Path]]:
    """The root CA, the certificates each case sends (leaf first) and each case's leaf key."""
    root = make_pki(directory / "root", ca_days=3650)
    issuers = {False: intermediate_ca(root, directory / "intermediate", INTERMEDIATE_DAYS),
               True: intermediate_ca(root, directory / "short-intermediate", SHORT_INTERMEDIATE_DAYS)}
    served, keys = {}, {}
    for case, (fault, with_intermediate, short, _) in CASES.items():
        issuer = issuers[short]
        leaf = faulty_server(issuer, directory / ("short-leaves" if short else "leaves"), fault, days=LEAF_DAYS)
        served[case] = (leaf.server_cert, issuer.ca) if with_intermediate else (leaf.server_cert,)
        keys[case] = leaf.server_key
    return root.ca, served, keys


@contextmanager
def nginx(directory: Path) -> Iterator[Nginx]:
    binary = need(NGINX, "run tests/lab/setup.sh (nginx)")
    directory.mkdir(parents=True, exist_ok=True)
    ca, served, keys = certificates(directory / "pki")
    (directory / "htpasswd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    (directory / "routes.conf").write_text(ROUTES)
    http_port, ports = free_port(), {case: free_port() for case in CASES}
    servers = [f"server {{ listen 127.0.0.1:{http_port}; include routes.conf; }}"]
    for case, port in ports.items():
        chain = directory / f"{case.replace(' ', '-')}.chain.pem"
        chain.write_text("".join(path.read_text() for path in served[case]))
        ciphers = "ssl_ciphers DEFAULT@SECLEVEL=0;" if "TLSv1 " in CASES[case][3] else ""
        servers.append(f"server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {chain}; "
                       f"ssl_certificate_key {keys[case]}; ssl_protocols {CASES[case][3]}; {ciphers} "
                       f"include routes.conf; }}")
    temporary = "\n".join(f"  {kind}_temp_path {directory / f'{kind}_temp'};"
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    servers_conf = "\n  ".join(servers)
    (directory / "nginx.conf").write_text(f"""\
load_module {ECHO_MODULE};
user root;  # the workers read htpasswd from the test's folder (ignored unless run as root)
worker_processes 1;
daemon off;
pid {directory / "nginx.pid"};
events {{ worker_connections 256; }}
http {{
  access_log {directory / "access.log"};
{temporary}
  default_type text/plain;
  map $arg_seconds $slow_seconds {{ "" 2; default $arg_seconds; }}
  {servers_conf}
}}
""")
    argv = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]  # Debian's logs to stderr

    def ready() -> bool:
        return http_get(f"http://127.0.0.1:{http_port}/health")[0] == 200

    with running(argv, directory / "nginx.log", ready, "nginx") as peer:
        yield Nginx(http_port, ports, ca, served, peer)
