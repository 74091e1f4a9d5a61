"""Rows of trusted certificates and of pending trust tokens."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row


@dataclass
class CertificateRow:
    id: int
    fingerprint: str
    type: str
    name: str
    certificate: str
    restricted: bool = False
    projects: list[str] = field(default_factory=list)
    description: str = ""


def _cert(r: Row) -> CertificateRow:
    return CertificateRow(
        r["id"],
        r["fingerprint"],
        r["type"],
        r["name"],
        r["certificate"],
        bool(r["restricted"]),
        json.loads(r["projects"]),
        r["description"],
    )


def list_certificates(db: Database) -> list[CertificateRow]:
    return [_cert(r) for r in db.all("SELECT * FROM certificates ORDER BY name, fingerprint")]


def find_certificate(db: Database, fingerprint: str) -> CertificateRow | None:
    r = db.one("SELECT * FROM certificates WHERE fingerprint = ?", (fingerprint,))
    return _cert(r) if r else None


def get_certificate(db: Database, prefix: str) -> CertificateRow:
    """By fingerprint or a unique prefix of it (as Incus accepts)."""
    found = [c for c in list_certificates(db) if prefix and c.fingerprint.startswith(prefix)]
    if len(found) != 1:
        raise NotFound(f"Certificate {prefix!r} not found")
    return found[0]


def insert_certificate(db: Database, row: CertificateRow) -> None:
    cur = db.execute(
        "INSERT INTO certificates (fingerprint, type, name, certificate, restricted, projects,"
        " description) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            row.fingerprint,
            row.type,
            row.name,
            row.certificate,
            int(row.restricted),
            json.dumps(row.projects),
            row.description,
        ),
    )
    row.id = int(cur.lastrowid or 0)


def update_certificate(db: Database, row: CertificateRow) -> None:
    db.execute(
        "UPDATE certificates SET fingerprint = ?, certificate = ?, type = ?, name = ?,"
        " restricted = ?, projects = ?, description = ? WHERE id = ?",
        (
            row.fingerprint,
            row.certificate,
            row.type,
            row.name,
            int(row.restricted),
            json.dumps(row.projects),
            row.description,
            row.id,
        ),
    )


def delete_certificate(db: Database, cert_id: int) -> None:
    db.execute("DELETE FROM certificates WHERE id = ?", (cert_id,))


@dataclass
class TokenRow:
    id: int
    secret: str
    name: str
    request: dict[str, Any] = field(default_factory=dict)
    expires_at: str = ""


def _token(r: Row) -> TokenRow:
    return TokenRow(r["id"], r["secret"], r["name"], json.loads(r["request"]), r["expires_at"])


def list_tokens(db: Database) -> list[TokenRow]:
    return [_token(r) for r in db.all("SELECT * FROM trust_tokens ORDER BY id")]


def find_token(db: Database, secret: str) -> TokenRow | None:
    r = db.one("SELECT * FROM trust_tokens WHERE secret = ?", (secret,))
    return _token(r) if r else None


def insert_token(db: Database, row: TokenRow) -> None:
    cur = db.execute(
        "INSERT INTO trust_tokens (secret, name, request, expires_at) VALUES (?, ?, ?, ?)",
        (row.secret, row.name, json.dumps(row.request), row.expires_at),
    )
    row.id = int(cur.lastrowid or 0)


def delete_token(db: Database, secret: str) -> None:
    db.execute("DELETE FROM trust_tokens WHERE secret = ?", (secret,))
