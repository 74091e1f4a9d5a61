"""/oidc/login, /oidc/callback, /oidc/logout: a web browser logs in at the OIDC issuer (the
authorization code flow with PKCE, as Incus's UI does); the tokens are kept in the browser's
cookies ``oidc_access`` and ``oidc_refresh``, which the API then takes as it takes a bearer
token (server/auth.py)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

import aiohttp
from aiohttp import web
from yarl import URL

from stapes.api.errors import BadRequest, NotFound, Unauthorized
from stapes.server.endpoint import Action, Endpoint, state
from stapes.server.oidc import OidcVerifier, PendingLogin
from stapes.server.oidc_cookies import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    clear_cookie,
    keep_tokens,
    set_cookie,
)
from stapes.server.response import Result

STATE_COOKIE = "oidc_state"
LOGIN_SECONDS = 600.0
"""How long a browser may stay at the issuer before its login is forgotten."""
MAX_LOGINS = 1000
"""Logins under way kept at most (anyone may start one): the oldest are forgotten first."""


def _configured(request: web.Request) -> OidcVerifier:
    oidc = state(request).oidc
    if not oidc.settings.enabled:
        raise NotFound("OIDC is not configured here: set oidc.issuer and oidc.client.id")
    return oidc


def _callback_url(request: web.Request) -> str:
    """This server's callback as the browser reached it (the issuer checks it is one of the
    client's registered redirect URIs)."""
    try:
        return str(URL.build(scheme="https", authority=request.host, path="/oidc/callback"))
    except ValueError:
        raise BadRequest(f"Bad Host header: {request.host!r}") from None


async def login(request: web.Request) -> Result:
    oidc = _configured(request)
    now = time.monotonic()
    for old in [s for s, p in oidc.logins.items() if now - p.started > LOGIN_SECONDS]:
        del oidc.logins[old]
    while len(oidc.logins) >= MAX_LOGINS:  # dicts keep insertion order: the oldest first
        del oidc.logins[next(iter(oidc.logins))]
    try:
        endpoint = URL((await oidc.discovery())["authorization_endpoint"])
    except (aiohttp.ClientError, KeyError, ValueError, TimeoutError) as exc:
        raise Unauthorized(f"The OIDC issuer cannot be reached: {exc}") from None
    login_state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    redirect_uri = _callback_url(request)
    oidc.logins[login_state] = PendingLogin(verifier, redirect_uri, now)
    settings = oidc.settings
    query = {
        "response_type": "code",
        "client_id": settings.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(s.strip() for s in settings.scopes.split(",") if s.strip()),
        "state": login_state,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    if settings.audience:
        query["audience"] = settings.audience
    response = web.Response(status=302, headers={"Location": str(endpoint.update_query(query))})
    # Lax, not Strict: the browser comes back from the issuer's site, and must bring it along
    set_cookie(response, STATE_COOKIE, login_state, int(LOGIN_SECONDS), same_site="Lax")
    return response


async def callback(request: web.Request) -> Result:
    oidc = _configured(request)
    if error := request.query.get("error", ""):
        detail = request.query.get("error_description", "")
        raise Unauthorized(f"The OIDC issuer refused the login: {error} {detail}".strip())
    login_state = request.query.get("state", "")
    pending = oidc.logins.pop(login_state, None)
    if (
        pending is None
        or request.cookies.get(STATE_COOKIE, "") != login_state
        or time.monotonic() - pending.started > LOGIN_SECONDS
    ):
        raise BadRequest(
            "This OIDC login is unknown, expired or was started in another browser: "
            "log in again from /oidc/login"
        )
    answer = await oidc.tokens(
        {
            "grant_type": "authorization_code",
            "code": request.query.get("code", ""),
            "redirect_uri": pending.redirect_uri,
            "client_id": oidc.settings.client_id,
            "code_verifier": pending.verifier,
        }
    )
    await oidc.verify(str(answer["access_token"]))
    response = web.Response(status=303, headers={"Location": "/ui/"})
    keep_tokens(response, answer)
    clear_cookie(response, STATE_COOKIE)
    return response


async def logout(request: web.Request) -> Result:
    response = web.Response(status=303, headers={"Location": "/ui/"})
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        clear_cookie(response, name)
    return response


ENDPOINTS = [
    Endpoint("/oidc/login", get=Action(login, allow_untrusted=True)),
    Endpoint("/oidc/callback", get=Action(callback, allow_untrusted=True)),
    Endpoint("/oidc/logout", get=Action(logout, allow_untrusted=True)),
]
