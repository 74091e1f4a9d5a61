"""Who sent a request, and what they may do: root over the unix socket; over HTTPS, a client
whose certificate is in the trust store (restricted ones to their projects only), or an
untrusted client, who sees only what Incus leaves public."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from stapes.api.errors import Forbidden
from stapes.config.server_keys import server_value
from stapes.config.validate import parse_bool
from stapes.db.certificates import find_certificate
from stapes.db.server_config import get_config
from stapes.server.ca_trust import signed_by_ca
from stapes.server.listeners import Peer
from stapes.server.oidc_cookies import ACCESS_COOKIE, REFRESH_COOKIE, user_of_cookies
from stapes.server.state import STATE, State

NOT_AUTHORIZED = "not authorized"


@dataclass(frozen=True)
class Identity:
    method: str
    """unix or tls."""
    trusted: bool
    name: str = ""
    """What GET /1.0 calls auth_user_name: root, or the certificate's fingerprint."""
    restricted: bool = False
    projects: tuple[str, ...] = ()
    peer: Peer | None = None
    metrics: bool = False
    """A certificate of type metrics: /1.0/metrics only."""
    member: bool = False
    """Another member of this server's cluster (its requests are never forwarded again)."""

    def may_use_project(self, project: str) -> bool:
        return self.trusted and (not self.restricted or project in self.projects)


LOCAL = Identity("unix", True, "root")
_KEY = "stapes.identity"


def identify(request: web.Request) -> Identity:
    """Decided once per request, when it starts (the connection is alive then)."""
    found = request.get(_KEY)
    if isinstance(found, Identity):
        return found
    st = request.app[STATE]
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if sockname == str(st.paths.socket):
        identity = LOCAL
    else:
        peer = st.https.peer(request) or st.metrics_https.peer(request)
        row = find_certificate(st.db, peer.fingerprint) if peer and peer.fingerprint else None
        if peer is not None and _cluster_member(st, peer):
            identity = Identity("tls", True, peer.fingerprint, peer=peer, member=True)
        elif row is not None and row.type == "metrics":
            identity = Identity(
                "tls", False, row.fingerprint, row.restricted, tuple(row.projects), peer, True
            )
        elif row is None and peer is not None and _ca_trusted(st, peer):
            identity = Identity("tls", True, peer.fingerprint, peer=peer)
        elif row is None or row.type != "client":
            identity = Identity("tls", False, peer=peer)
        else:
            identity = Identity(
                "tls", True, row.fingerprint, row.restricted, tuple(row.projects), peer
            )
    request[_KEY] = identity
    return identity


def _cluster_member(st: State, peer: Peer) -> bool:
    """Another member of this server's cluster: it presents the cluster certificate (every
    member's server certificate), never through the metrics listener."""
    return (
        st.membership.clustered
        and not peer.metrics_only
        and bool(peer.fingerprint)
        and peer.fingerprint == st.cluster.transport.fingerprint()
    )


def _ca_trusted(st: State, peer: Peer) -> bool:
    """core.trust_ca_certificates: a certificate server.ca signed (PKI mode)."""
    if peer.certificate is None or peer.metrics_only:
        return False
    if not parse_bool(server_value(get_config(st.db), "core.trust_ca_certificates")):
        return False
    return signed_by_ca(peer.certificate, st.paths.server_ca, st.paths.server_crl)


# What a restricted certificate may reach: the API of the projects it is restricted to.
_PROJECT_SCOPED = re.compile(
    r"^/1\.0/(instances|images|profiles|operations|events|metrics|network-zones)(/|$)"
    r"|^/1\.0/storage-pools/[^/]+/volumes(/|$)"
)


async def authenticate(request: web.Request) -> Identity:
    """identify(), plus OIDC: an HTTPS client without a trusted certificate but with a valid
    bearer token (or a browser with the token in its cookies) is trusted as the token's user."""
    identity = identify(request)
    oidc = request.app[STATE].oidc
    if identity.method != "tls" or identity.trusted or not oidc.settings.enabled:
        return identity
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        user: str | None = await oidc.verify(header.removeprefix("Bearer ").strip())
    elif ACCESS_COOKIE in request.cookies or REFRESH_COOKIE in request.cookies:
        user = await user_of_cookies(request, oidc)  # None: logged out, as untrusted
    else:
        user = None
    if user is not None:
        identity = Identity("oidc", True, user, peer=identity.peer)
        request[_KEY] = identity
    return identity


def require_trusted(request: web.Request, *, metrics: bool = False) -> Identity:
    """A trusted client (``metrics``: or a metrics certificate), kept in its projects."""
    identity = identify(request)
    if not identity.trusted and not (metrics and identity.metrics):
        raise Forbidden(NOT_AUTHORIZED)
    if identity.restricted:
        _check_restricted(request, identity)
    return identity


def _check_restricted(request: web.Request, identity: Identity) -> None:
    """A restricted client stays in its projects: project-scoped endpoints only, one of its
    projects named (or the default one it then must have), never all projects at once."""
    path = request.path
    project = request.query.get("project", "") or "default"
    if path == "/1.0/projects" and request.method == "GET":
        return  # listed: only its own projects
    if path.startswith("/1.0/projects/"):
        scoped = path.split("/")[3] in identity.projects and request.method == "GET"
        project = path.split("/")[3]
    else:
        scoped = bool(_PROJECT_SCOPED.match(path))
    if not scoped or request.query.get("all-projects") in ("1", "true"):
        raise Forbidden(f"Certificate is restricted to projects: {', '.join(identity.projects)}")
    if project not in identity.projects:
        raise Forbidden(f"Certificate is restricted: no access to project {project!r}")


def require_project(request: web.Request, project: str) -> None:
    """A project named inside a request (a copy's source, a move's target), checked against
    the caller as the URL's project is: a restricted client reaches only its own projects."""
    identity = identify(request)
    if project and not identity.may_use_project(project):
        raise Forbidden(f"Certificate is restricted: no access to project {project!r}")


def check_public(request: web.Request, identity: Identity) -> None:
    """On endpoints open to everyone (GET /1.0, public images...): a restricted client that
    names a project still only names its own."""
    if identity.restricted and _PROJECT_SCOPED.match(request.path):
        _check_restricted(request, identity)


def may_see_operation(identity: Identity, project: str, cls: str) -> bool:
    """Restricted clients see their projects' operations, and never trust tokens."""
    return not identity.restricted or (project in identity.projects and cls != "token")
