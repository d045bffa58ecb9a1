"""A throwaway CA with server and client certificates, made by the real openssl CLI; and server
certificates that fail verification in each way (expired, not valid yet, for another name,
self-signed), made with cryptography: openssl 3.0's CLI cannot date a certificate in the past."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from tests.lab.harness import need


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path, server_names: tuple[str, ...] = ("IP:127.0.0.1", "DNS:localhost"),
             days: int = 2) -> PKI:
    openssl = need("openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vigil test CA")
    (directory / "server.ext").write_text(f"subjectAltName={','.join(server_names)}\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=vigil test {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", str(days), "-extfile", f"{name}.ext")
    return PKI(directory / "ca.pem", directory / "server.pem", directory / "server.key",
               directory / "client.pem", directory / "client.key")


def faulty_server(pki: PKI, directory: Path, fault: str) -> PKI:
    """The PKI with a server certificate that fails verification with its CA: `expired`,
    `not yet valid`, `wrong host` (for other.example only), `self-signed`; any other certificate is
    valid for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"vigil test server, {fault}")])
    ca_key = serialization.load_pem_private_key((pki.ca.parent / "ca.key").read_bytes(), None)
    issuer = x509.load_pem_x509_certificate(pki.ca.read_bytes()).subject
    if fault == "self-signed":
        ca_key, issuer = key, name
    now = dt.datetime.now(dt.UTC)
    start, end = {"expired": (-3, -1), "not yet valid": (1, 3)}.get(fault, (-1, 2))
    names = ([x509.DNSName("other.example")] if fault == "wrong host"
             else [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=start)).not_valid_after(now + dt.timedelta(days=end))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    slug = fault.replace(" ", "-")
    (directory / f"{slug}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{slug}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    return replace(pki, server_cert=directory / f"{slug}.pem", server_key=directory / f"{slug}.key")
