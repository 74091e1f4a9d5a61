"""core.trust_ca_certificates: with a CA in server.ca, a client certificate that CA signed (in
its validity period, not in server.crl) is trusted without being added, as Incus's PKI mode
trusts it. The signature is checked by cryptography; nothing here parses X.509 by hand."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature


def _load(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def signed_by_ca(cert: x509.Certificate, ca_path: Path, crl_path: Path) -> bool:
    """Whether the CA at ``ca_path`` issued ``cert``, which is valid now and not revoked."""
    pem = _load(ca_path)
    if pem is None:
        return False
    try:
        ca = x509.load_pem_x509_certificate(pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return False
    crl_pem = _load(crl_path)
    if crl_pem is not None:
        try:
            crl = x509.load_pem_x509_crl(crl_pem)
        except ValueError:
            return False  # a CRL that cannot be read revokes everything, rather than nothing
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return False
    return True
