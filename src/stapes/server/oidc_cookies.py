"""The browser's OIDC tokens in its cookies (``oidc_access``, ``oidc_refresh``, as Incus names
them): set by /oidc/callback, read by server/auth.py as a bearer token is, refreshed at the
issuer when the access token expired."""

from __future__ import annotations

import logging

from aiohttp import web

from stapes.api.errors import Unauthorized
from stapes.server.oidc import OidcVerifier

log = logging.getLogger(__name__)

ACCESS_COOKIE = "oidc_access"
REFRESH_COOKIE = "oidc_refresh"
_NEW_COOKIES = "stapes.oidc_cookies"


def set_cookie(
    response: web.StreamResponse,
    name: str,
    value: str,
    max_age: int | None,
    same_site: str = "Strict",
) -> None:
    """Sent back over HTTPS only, never readable by scripts; Strict: never sent along with a
    request another site starts (no request forged from elsewhere carries the login)."""
    response.set_cookie(
        name, value, path="/", secure=True, httponly=True, samesite=same_site, max_age=max_age
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/", secure=True, httponly=True, samesite="Strict")


def keep_tokens(response: web.StreamResponse, answer: dict[str, object]) -> None:
    """The issuer's tokens into the browser's cookies."""
    set_cookie(response, ACCESS_COOKIE, str(answer["access_token"]), None)
    if answer.get("refresh_token"):
        set_cookie(response, REFRESH_COOKIE, str(answer["refresh_token"]), None)


async def user_of_cookies(request: web.Request, oidc: OidcVerifier) -> str | None:
    """The user the browser's OIDC cookies name (the access token refreshed when it expired
    and a refresh token is there; the new tokens are sent back with the response); None when
    they name nobody: the browser is then untrusted, and may log in again. A page of another
    origin gets nothing from them: SameSite keeps other sites' requests from carrying them, but
    not those of another port of the same host, and websockets are not held back by CORS; a
    browser names the page's origin on every request that is not a same-origin GET."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"https://{request.host}":
        log.info("OIDC cookies sent from another origin (%s): not taken", origin)
        return None
    if ACCESS_COOKIE in request.cookies:
        try:
            return await oidc.verify(request.cookies[ACCESS_COOKIE])
        except Unauthorized:
            pass
    refresh = request.cookies.get(REFRESH_COOKIE, "")
    if not refresh:
        return None
    try:
        answer = await oidc.tokens(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": oidc.settings.client_id,
            }
        )
        user = await oidc.verify(str(answer["access_token"]))
    except Unauthorized:
        return None
    request[_NEW_COOKIES] = answer
    return user


def send_new_cookies(request: web.Request, response: web.StreamResponse) -> None:
    """Tokens refreshed while the request was authenticated go back with its answer."""
    answer = request.get(_NEW_COOKIES)
    if isinstance(answer, dict) and not response.prepared:
        keep_tokens(response, answer)
