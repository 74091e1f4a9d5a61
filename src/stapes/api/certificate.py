"""Request bodies of /1.0/certificates, and the trust token clients carry."""

from __future__ import annotations

import base64
import binascii
import json

from pydantic import Field

from stapes.api.base import WireModel

CERTIFICATE_TYPES = ("client", "metrics")


class CertificatePut(WireModel):
    name: str = ""
    type: str = "client"
    restricted: bool = False
    projects: list[str] = Field(default_factory=list)
    certificate: str = ""
    description: str = ""


class CertificatesPost(CertificatePut):
    trust_token: str = ""
    token: bool = False
    """Ask for a trust token (an operation) instead of adding a certificate."""
    password: str = ""


class TrustToken(WireModel):
    """What ``stapes config trust add`` prints, base64 of this JSON (Incus's format)."""

    client_name: str
    fingerprint: str
    addresses: list[str] = Field(default_factory=list)
    secret: str
    expires_at: str = "0001-01-01T00:00:00Z"

    def encode(self) -> str:
        return base64.b64encode(self.model_dump_json().encode()).decode()

    @classmethod
    def decode(cls, text: str) -> TrustToken:
        """ValueError when ``text`` is not a token."""
        try:
            raw = base64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
            return cls.model_validate(json.loads(raw))
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not a trust token") from exc
