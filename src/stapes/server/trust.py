"""The trust store: client certificates allowed over HTTPS, and trust tokens that let a new
client add its own. A token is an operation of class ``token`` (as in Incus, so ``incus config
trust list-tokens`` and ``revoke-token`` work), backed by a database row so it outlives a daemon
restart; using it or cancelling the operation removes it."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from typing import Any

from cryptography import x509
from pyroute2 import IPRoute

from stapes import certs
from stapes.api.certificate import CERTIFICATE_TYPES, CertificatePut, CertificatesPost, TrustToken
from stapes.api.errors import BadRequest, Conflict, Forbidden
from stapes.api.lifecycle import CertificateAction
from stapes.api.times import now, parse_timestamp, timestamp
from stapes.api.urls import certificate_url
from stapes.config.server_keys import server_value
from stapes.config.validate import add_expiry, split_address
from stapes.db import certificates as q
from stapes.db.connection import Database
from stapes.db.projects import list_projects
from stapes.db.server_config import get_config
from stapes.runtime.events import EventBus
from stapes.runtime.operations import Operation, Operations
from stapes.server.auth import NOT_AUTHORIZED, Identity
from stapes.server.listeners import Https

log = logging.getLogger(__name__)


class Trust:
    def __init__(self, db: Database, operations: Operations, events: EventBus, https: Https):
        self.db = db
        self.operations = operations
        self.events = events
        self.https = https
        self._token_ops: dict[str, Operation] = {}
        """secret -> its operation."""

    # -- certificates ---------------------------------------------------------------------------

    def list_certificates(self) -> list[q.CertificateRow]:
        return q.list_certificates(self.db)

    def get(self, fingerprint: str) -> q.CertificateRow:
        return q.get_certificate(self.db, fingerprint)

    @staticmethod
    def render(row: q.CertificateRow) -> dict[str, Any]:
        return {
            "name": row.name,
            "type": row.type,
            "restricted": row.restricted,
            "projects": row.projects,
            "certificate": row.certificate,
            "description": row.description,
            "fingerprint": row.fingerprint,
        }

    @classmethod
    def writable(cls, row: q.CertificateRow) -> dict[str, Any]:
        return {k: val for k, val in cls.render(row).items() if k != "fingerprint"}

    def _check(self, put: CertificatePut) -> None:
        if put.type not in CERTIFICATE_TYPES:
            raise BadRequest(f"Invalid certificate type {put.type!r}: use client or metrics")
        known = {p.name for p in list_projects(self.db)}
        for project in put.projects:
            if project not in known:
                raise BadRequest(f"Project {project!r} does not exist")

    def _insert(self, cert: x509.Certificate, put: CertificatePut) -> str:
        fingerprint = certs.fingerprint(cert)
        if fingerprint == self.https.described()[1]:
            raise BadRequest("This is the server's own certificate")
        if q.find_certificate(self.db, fingerprint) is not None:
            raise Conflict("Certificate already in trust store")
        name = put.name or _common_name(cert) or fingerprint[:12]
        row = q.CertificateRow(
            0,
            fingerprint,
            put.type,
            name,
            certs.pem(cert),
            put.restricted,
            list(put.projects),
            put.description,
        )
        with self.db.transaction():
            q.insert_certificate(self.db, row)
        self.events.lifecycle(CertificateAction.CREATED, certificate_url(fingerprint))
        return fingerprint

    async def add(self, req: CertificatesPost, identity: Identity) -> Operation | str:
        """A token operation (``token: true``), or the fingerprint of the certificate added:
        the one in the body, else the client's own (untrusted clients: with a trust token)."""
        if not identity.trusted:
            return self._enrol(req, identity)
        if req.trust_token:
            raise BadRequest("Client is already trusted")
        self._check(req)
        if identity.restricted:
            raise Forbidden("Restricted clients cannot add certificates")
        if req.token:
            return self._new_token(req)
        if req.certificate:
            try:
                cert = certs.parse(req.certificate)
            except ValueError:
                raise BadRequest("Invalid certificate: not a PEM or base64 certificate") from None
        elif identity.peer is not None and identity.peer.certificate is not None:
            cert = identity.peer.certificate
        else:
            raise BadRequest("No certificate given (certificate is empty and none was presented)")
        return self._insert(cert, req)

    def _enrol(self, req: CertificatesPost, identity: Identity) -> str:
        """An untrusted client adds its own certificate with a trust token (anything else gets
        Incus's bare 403, which says nothing about the token)."""
        peer_cert = identity.peer.certificate if identity.peer else None
        if peer_cert is None or not req.trust_token:
            raise Forbidden(NOT_AUTHORIZED)
        if q.find_certificate(self.db, certs.fingerprint(peer_cert)) is not None:
            raise BadRequest("Client is already trusted")
        try:
            secret = TrustToken.decode(req.trust_token).secret
        except ValueError:
            secret = req.trust_token  # a bare secret, as older clients send
        row = q.find_token(self.db, secret)
        if row is None or not secrets.compare_digest(row.secret, secret):
            raise Forbidden(NOT_AUTHORIZED)
        expires = parse_timestamp(row.expires_at)
        if expires is not None and expires <= now():
            self._use_token(row.secret)
            raise Forbidden(NOT_AUTHORIZED)
        asked = CertificatePut.model_validate({**row.request, "certificate": ""})
        fingerprint = self._insert(peer_cert, asked)
        self._use_token(row.secret)
        return fingerprint

    def update(self, row: q.CertificateRow, put: CertificatePut) -> None:
        """Name, type, restrictions, description; and, as Incus lets an administrator do, the
        certificate itself (a renewed one: the entry takes its fingerprint)."""
        self._check(put)
        if put.certificate and put.certificate.strip() != row.certificate.strip():
            try:
                new = certs.parse(put.certificate)
            except ValueError:
                raise BadRequest("Invalid PEM encoded certificate") from None
            fingerprint = certs.fingerprint(new)
            if fingerprint == self.https.described()[1]:
                raise BadRequest("This is the server's own certificate")
            if fingerprint != row.fingerprint and q.find_certificate(self.db, fingerprint):
                raise Conflict("Certificate already in trust store")
            row.fingerprint, row.certificate = fingerprint, certs.pem(new)
        row.name = put.name or row.name
        row.type, row.restricted = put.type, put.restricted
        row.projects, row.description = list(put.projects), put.description
        with self.db.transaction():
            q.update_certificate(self.db, row)
        self.events.lifecycle(CertificateAction.UPDATED, certificate_url(row.fingerprint))

    def delete(self, row: q.CertificateRow) -> None:
        with self.db.transaction():
            q.delete_certificate(self.db, row.id)
        self.events.lifecycle(CertificateAction.DELETED, certificate_url(row.fingerprint))

    # -- tokens ---------------------------------------------------------------------------------

    def _new_token(self, req: CertificatesPost) -> Operation:
        if not req.name:
            raise BadRequest("A trust token needs the name of the client it is for")
        if not self.https.address:
            raise BadRequest(
                "The server does not listen on the network: set core.https_address first"
            )
        request = req.model_dump(exclude={"password"})
        expiry = server_value(get_config(self.db), "core.remote_token_expiry")
        expires_at = timestamp(add_expiry(now(), expiry)) if expiry else ""
        row = q.TokenRow(0, secrets.token_hex(32), req.name, request, expires_at)
        with self.db.transaction():
            q.insert_token(self.db, row)
        return self._token_operation(row)

    def _token_operation(self, row: q.TokenRow) -> Operation:
        metadata = {
            "addresses": self.addresses(),
            "fingerprint": self.https.described()[1],
            "request": row.request,
            "secret": row.secret,
        }
        expires = parse_timestamp(row.expires_at)
        if expires is not None:
            metadata["expiresAt"] = row.expires_at

        op = self.operations.start_token(metadata, expires, lambda: self._forget_token(row.secret))
        self._token_ops[row.secret] = op
        return op

    def _use_token(self, secret: str) -> None:
        op = self._token_ops.get(secret)
        self._forget_token(secret)
        if op is not None and not op.finished:
            op.cancel()

    def _forget_token(self, secret: str) -> None:
        self._token_ops.pop(secret, None)
        with self.db.transaction():
            q.delete_token(self.db, secret)

    def restore_tokens(self) -> None:
        """At daemon start: the tokens not used yet are operations again."""
        for row in q.list_tokens(self.db):
            expires = parse_timestamp(row.expires_at)
            if expires is not None and expires <= now():
                self._forget_token(row.secret)
            else:
                self._token_operation(row)

    def addresses(self) -> list[str]:
        """Where clients reach the listener: its address, or every address of the host when it
        listens on all of them."""
        host, port = split_address(self.https.address)
        if host not in ("", "0.0.0.0", "::"):
            return [self.https.address]
        with IPRoute() as ipr:
            found = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr()]
        usable = []
        for text in found:
            address = ipaddress.ip_address(text)
            if address.is_link_local or (host == "0.0.0.0" and address.version == 6):
                continue
            usable.append(f"[{text}]:{port}" if address.version == 6 else f"{text}:{port}")
        return usable


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
