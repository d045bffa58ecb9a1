"""SIGHUP on a TLS + basic-auth agent (`vigil run` as a process): a new password hash and a
new certificate both apply, and a reload with a missing cert_file keeps the old ones."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess

import bcrypt

from tests.conftest import ROOT, vigil_argv
from tests.lab.harness import Peer, free_port, wait_until
from tests.lab.pki import make_pki
from tests.test_lifecycle import notify_socket, received  # noqa: F401 (a fixture)
from tests.test_web import get, openssl_serial, served_serial


def expiry(url, client) -> float:
    text = get(url + "metrics", client, "prometheus", "new password")[1]
    if "vigil_tls" not in text:
        text = get(url + "metrics", client, "prometheus", "old password")[1]
    return float(re.search(r"^vigil_tls_certificate_expiry_timestamp_seconds (\S+)$", text, re.M).group(1))


def openssl_expiry(cert) -> float:
    done = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)], capture_output=True, text=True,
                          check=True)
    return ssl.cert_time_to_seconds(done.stdout.strip().removeprefix("notAfter="))


def write_web(path, pki, users: dict[str, str], cert=None) -> None:
    path.write_text(f"tls_server_config:\n  cert_file: {cert or pki.server_cert}\n  key_file: {pki.server_key}\n"
                    "basic_auth_users:\n" + "".join(f"  {user}: '{hashed}'\n" for user, hashed in users.items()))


def test_sighup_applies_a_new_password_and_certificate_or_keeps_both(tmp_path, notify_socket):  # noqa: F811
    sock, notify_path = notify_socket
    old_pki, new_pki = make_pki(tmp_path / "old"), make_pki(tmp_path / "new", days=90)
    client = ssl.create_default_context(cafile=old_pki.ca)
    client.load_verify_locations(cafile=new_pki.ca)
    old_hash = bcrypt.hashpw(b"old password", bcrypt.gensalt(rounds=4)).decode()
    new_hash = bcrypt.hashpw(b"new password", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    write_web(web, old_pki, {"prometheus": old_hash})
    port = free_port()
    config = tmp_path / "vigil.yaml"
    config.write_text(f"listen: 127.0.0.1:{port}\nstate_dir: {tmp_path}/state\nweb_config: {web}\n"
                      "targets:\n  - {name: me, kind: host, interval: 1s}\n")
    url = f"https://127.0.0.1:{port}/"
    agent = Peer(vigil_argv("run", "-c", str(config)), tmp_path / "agent.log", {"NOTIFY_SOCKET": str(notify_path)},
                 cwd=ROOT)
    try:
        wait_until(lambda: get(url + "-/ready", client, "prometheus", "old password")[0] == 200, 20,
                   "the agent to be ready")
        assert received(sock, 0.3)[0].startswith(f"READY=1\nSTATUS=serving {url}")
        assert served_serial(url, client) == openssl_serial(old_pki.server_cert)
        assert expiry(url, client) == openssl_expiry(old_pki.server_cert)

        write_web(web, new_pki, {"prometheus": new_hash})
        agent.signal(signal.SIGHUP)
        wait_until(lambda: served_serial(url, client) == openssl_serial(new_pki.server_cert), 10,
                   "the new certificate")
        assert get(url + "metrics", client, "prometheus", "old password")[0] == 401
        assert get(url + "metrics", client, "prometheus", "new password")[0] == 200
        assert [m.split("\n")[0] for m in received(sock, 0.5)] == ["RELOADING=1", "READY=1"]
        assert expiry(url, client) == openssl_expiry(new_pki.server_cert) > openssl_expiry(old_pki.server_cert)

        missing = tmp_path / "renewed.pem"
        write_web(web, new_pki, {"prometheus": old_hash}, cert=missing)
        agent.signal(signal.SIGHUP)
        wait_until(lambda: str(missing) in agent.output(), 10, "the rejected reload in the log")
        assert [m.split("\n")[0] for m in received(sock, 0.5)] == ["RELOADING=1", "READY=1"]
        lines = [line for line in agent.output().splitlines() if str(missing) in line]
        assert len(lines) == 1 and lines[0].endswith(
            f"{web}:2: tls_server_config.cert_file: cannot read {missing} (No such file or directory)"), lines
        assert served_serial(url, client) == openssl_serial(new_pki.server_cert)
        assert get(url + "metrics", client, "prometheus", "new password")[0] == 200
        assert get(url + "metrics", client, "prometheus", "old password")[0] == 401
        assert expiry(url, client) == openssl_expiry(new_pki.server_cert), "the served certificate's, still"
        assert "Traceback" not in agent.output() and agent.alive()
    finally:
        agent.stop()
