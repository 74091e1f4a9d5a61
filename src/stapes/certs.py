"""TLS certificates of the daemon and of clients: self-signed ECDSA (P-384) pairs made with
``cryptography``, and their fingerprints (SHA-256 of the DER form, as Incus shows them)."""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 3650


def generate(common_name: str, organization: str = "Stapes") -> tuple[bytes, bytes]:
    """A new self-signed (certificate, private key), both PEM. The certificate names the host
    and the loopback addresses, so it also serves as a server certificate."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA384())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def load_or_create(cert_path: Path, key_path: Path, common_name: str) -> bytes:
    """The certificate at ``cert_path`` (its key beside it), made on first use; the key is
    written 0600 before any byte of it."""
    if cert_path.exists() and key_path.exists():
        return cert_path.read_bytes()
    cert, key = generate(common_name)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    cert_path.write_bytes(cert)
    return cert


def parse(pem_or_der: bytes | str) -> x509.Certificate:
    """A certificate from PEM, or from the bare base64 body Incus clients send; ValueError when
    it is none of these."""
    data = pem_or_der.encode() if isinstance(pem_or_der, str) else pem_or_der
    data = data.strip()
    if not data.startswith(b"-----BEGIN"):
        data = b"-----BEGIN CERTIFICATE-----\n" + data + b"\n-----END CERTIFICATE-----\n"
    return x509.load_pem_x509_certificate(data)


def bare(pem_text: str) -> str:
    """The base64 body of a PEM certificate, the form Incus's API takes."""
    return "".join(line for line in pem_text.strip().splitlines() if not line.startswith("-----"))


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 of the DER certificate, lower-case hex (``bytes``: DER already)."""
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


@functools.lru_cache(maxsize=4)
def described(pem_bytes: bytes) -> tuple[str, str]:
    """A PEM certificate's normalised PEM and fingerprint, parsed once per certificate (the
    server's is read for every GET /1.0 and changes only when it is replaced)."""
    cert = parse(pem_bytes)
    return pem(cert), fingerprint(cert)


def check_pair(cert_pem: str, key_pem: str) -> None:
    """ValueError unless ``key_pem`` is the private key of the certificate ``cert_pem``."""
    cert = parse(cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM private key without password: {exc}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.PEM, public)
    if mine != cert.public_key().public_bytes(serialization.Encoding.PEM, public):
        raise ValueError("the key is not the certificate's")


def replace_pair(cert_path: Path, key_path: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """The server's certificate and key replaced, each file whole or not at all (the key
    0600 from its first byte)."""
    for path, data, mode in ((key_path, key_pem, 0o600), (cert_path, cert_pem, 0o644)):
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
