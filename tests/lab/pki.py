"""A throwaway CA with server and client certificates, made by the real openssl CLI; and server
certificates that fail verification in each way (expired, not valid yet, for another name,
self-signed), made with cryptography: openssl 3.0's CLI cannot date a certificate in the past.
An intermediate CA issues leaves that a server sends with it, as public CAs' leaves are."""

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
             days: int = 2, ca_days: int = 2) -> PKI:
    openssl = need("openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(ca_days),
        "-subj", "/CN=vigil test CA")
    (directory / "server.ext").write_text(f"subjectAltName={','.join(server_names)}\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=vigil test {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", str(days), "-extfile", f"{name}.ext")
    return PKI(directory / "ca.pem", directory / "server.pem", directory / "server.key",
               directory / "client.pem", directory / "client.key")


def faulty_server(pki: PKI, directory: Path, fault: str, days: int = 2) -> PKI:
    """The PKI with a server certificate that fails verification with its CA: `expired`,
    `not yet valid`, `wrong host` (for other.example only), `self-signed`; any other certificate is
    valid for 127.0.0.1 and localhost, for `days` from now. Its CN names the fault."""
    from cryptography import x509

    start, end = {"expired": (-3, -1), "not yet valid": (1, 3)}.get(fault, (-1, days))
    names = ([x509.DNSName("other.example")] if fault == "wrong host"
             else [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    cert, key = _issue(pki, directory, fault.replace(" ", "-"), f"vigil test server, {fault}", start, end,
                       [x509.SubjectAlternativeName(names)], self_signed=fault == "self-signed")
    return replace(pki, server_cert=cert, server_key=key)


def intermediate_ca(pki: PKI, directory: Path, days: int) -> PKI:
    """An intermediate CA signed by `pki`'s, valid for `days`, as a PKI whose `ca` it is (its key
    beside it, in a `directory` of its own), so that `faulty_server` issues leaves from it. Clients
    trust the root (`pki.ca`); a server must send this certificate after its leaf."""
    from cryptography import x509

    cert, _ = _issue(pki, directory, "ca", f"vigil test intermediate CA, {days} days", -1, days,
                       [x509.BasicConstraints(ca=True, path_length=0),
                        x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                      content_commitment=False, key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, encipher_only=False, decipher_only=False)])
    return replace(pki, ca=cert)


def _issue(pki: PKI, directory: Path, slug: str, common_name: str, start: int, end: int, extensions: list,
           self_signed: bool = False) -> tuple[Path, Path]:
    """A new key and a certificate for it, valid from `start` to `end` days from now, signed by
    `pki`'s CA (or by itself), written to `slug`.pem and `slug`.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca_key = serialization.load_pem_private_key((pki.ca.parent / "ca.key").read_bytes(), None)
    issuer = x509.load_pem_x509_certificate(pki.ca.read_bytes()).subject
    if self_signed:
        ca_key, issuer = key, name
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=start)).not_valid_after(now + dt.timedelta(days=end)))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=isinstance(extension, x509.BasicConstraints))
    cert = builder.sign(ca_key, hashes.SHA256())
    (directory / f"{slug}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{slug}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    return directory / f"{slug}.pem", directory / f"{slug}.key"
