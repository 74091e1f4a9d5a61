"""/1.0/certificates[/{fingerprint}]: the trust store. POST is open to untrusted clients, who
may only add their own certificate with a trust token."""

from __future__ import annotations

from aiohttp import web

from stapes.api.certificate import CertificatePut, CertificatesPost
from stapes.api.urls import certificate_url
from stapes.db.certificates import CertificateRow
from stapes.server.auth import identify
from stapes.server.endpoint import Action, Endpoint, body_as, check_etag, patched, recursion, state
from stapes.server.response import Async, Result, Sync, created


def _certificate(request: web.Request) -> CertificateRow:
    return state(request).trust.get(request.match_info["fingerprint"])


async def list_certificates(request: web.Request) -> Result:
    trust = state(request).trust
    rows = trust.list_certificates()
    if recursion(request) >= 1:
        return Sync([trust.render(r) for r in rows])
    return Sync([certificate_url(r.fingerprint) for r in rows])


async def add_certificate(request: web.Request) -> Result:
    req = await body_as(request, CertificatesPost)
    added = await state(request).trust.add(req, identify(request))
    if isinstance(added, str):
        return created(certificate_url(added))
    return Async(added)


async def get_certificate(request: web.Request) -> Result:
    trust = state(request).trust
    row = _certificate(request)
    return Sync(trust.render(row), etag=trust.writable(row))


async def put_certificate(request: web.Request) -> Result:
    trust = state(request).trust
    row = _certificate(request)
    check_etag(request, trust.writable(row))
    trust.update(row, await body_as(request, CertificatePut))
    return Sync()


async def patch_certificate(request: web.Request) -> Result:
    trust = state(request).trust
    row = _certificate(request)
    current = trust.writable(row)
    check_etag(request, current)
    trust.update(row, await patched(request, current, (), CertificatePut))
    return Sync()


async def delete_certificate(request: web.Request) -> Result:
    state(request).trust.delete(_certificate(request))
    return Sync()


ENDPOINTS = [
    Endpoint(
        "/certificates",
        get=Action(list_certificates),
        post=Action(add_certificate, allow_untrusted=True),
    ),
    Endpoint(
        "/certificates/{fingerprint}",
        get=Action(get_certificate),
        put=Action(put_certificate),
        patch=Action(patch_certificate),
        delete=Action(delete_certificate),
    ),
]
