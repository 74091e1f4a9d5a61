"""OIDC bearer tokens on the HTTPS API: with ``oidc.issuer`` and ``oidc.client.id`` set, a
request carrying ``Authorization: Bearer <JWT>`` is trusted when the token is signed by a key
of the issuer's JWKS (found through its discovery document, cached for five minutes and
fetched again for an unknown key id), names the issuer, is meant for ``oidc.audience`` (or the
client id) and has not expired. The user is the token's ``oidc.claim`` (default ``email``),
else its subject. PyJWT checks the token; nothing here parses JWTs by hand."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from stapes.api.errors import Unauthorized

log = logging.getLogger(__name__)
CACHE_SECONDS = 300.0
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA"]
NOT_AUTHORIZED = "not authorized"


@dataclass(frozen=True)
class OidcSettings:
    issuer: str = ""
    client_id: str = ""
    audience: str = ""
    claim: str = ""
    scopes: str = "openid,offline_access"

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id)

    def login_headers(self) -> dict[str, str]:
        """What a client needs to log in at the issuer (the incus client's device flow)."""
        return {
            "X-Incus-OIDC-issuer": self.issuer,
            "X-Incus-OIDC-clientid": self.client_id,
            "X-Incus-OIDC-audience": self.audience,
            "X-Incus-OIDC-scopes": self.scopes,
        }

    @classmethod
    def from_config(cls, config: dict[str, str]) -> OidcSettings:
        return cls(
            config.get("oidc.issuer", ""),
            config.get("oidc.client.id", ""),
            config.get("oidc.audience", ""),
            config.get("oidc.claim", ""),
            config.get("oidc.scopes", "") or "openid,offline_access",
        )


@dataclass(frozen=True)
class PendingLogin:
    """A browser sent to the issuer by /oidc/login, until it comes back to /oidc/callback."""

    verifier: str
    """PKCE: the secret whose hash the issuer was given."""
    redirect_uri: str
    started: float


class OidcVerifier:
    def __init__(self) -> None:
        self.settings = OidcSettings()
        self._keys: jwt.PyJWKSet | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()
        self.logins: dict[str, PendingLogin] = {}
        """Browser logins under way, by their state parameter."""

    def configure(self, settings: OidcSettings) -> None:
        if settings != self.settings:
            self.settings, self._keys = settings, None

    async def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document (its endpoints)."""
        issuer = self.settings.issuer.rstrip("/")
        timeout = aiohttp.ClientTimeout(total=10)
        url = f"{issuer}/.well-known/openid-configuration"
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            resp.raise_for_status()
            found: dict[str, Any] = await resp.json(content_type=None)
            return found

    async def _fetch_keys(self) -> jwt.PyJWKSet:
        discovery = await self.discovery()
        timeout = aiohttp.ClientTimeout(total=10)
        url = discovery["jwks_uri"]
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            resp.raise_for_status()
            return jwt.PyJWKSet.from_dict(await resp.json(content_type=None))

    async def tokens(self, form: dict[str, str]) -> dict[str, Any]:
        """A request to the issuer's token endpoint (a code exchanged, a token refreshed):
        its answer, which has an access_token; Unauthorized when the issuer refuses."""
        try:
            endpoint = (await self.discovery())["token_endpoint"]
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(endpoint, data=form) as resp,
            ):
                answer: dict[str, Any] = await resp.json(content_type=None)
                if resp.status != 200 or not answer.get("access_token"):
                    raise ValueError(f"{resp.status}: {answer.get('error', answer)}")
                return answer
        except (aiohttp.ClientError, KeyError, ValueError, TimeoutError) as exc:
            log.info("OIDC token request refused: %s", exc)
            raise Unauthorized(
                f"The OIDC issuer refused the login: {exc}", self.settings.login_headers()
            ) from None

    async def _keyset(self, refresh: bool) -> jwt.PyJWKSet:
        async with self._lock:
            stale = time.monotonic() - self._fetched > CACHE_SECONDS
            if self._keys is None or refresh or stale:
                self._keys = await self._fetch_keys()
                self._fetched = time.monotonic()
            return self._keys

    async def _key(self, kid: str) -> jwt.PyJWK:
        for refresh in (False, True):
            keys = await self._keyset(refresh)
            for key in keys.keys:
                if key.key_id == kid or (not kid and len(keys.keys) == 1):
                    return key
        raise jwt.InvalidTokenError(f"no key {kid!r} in the issuer's JWKS")

    async def verify(self, token: str) -> str:
        """The user a valid token names; Unauthorized otherwise, with the headers a client
        logs in with (the reason is logged, not told), as Incus answers."""
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
            key = await self._key(str(header.get("kid", "")))
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=ALGORITHMS,
                audience=settings.audience or settings.client_id,
                issuer=settings.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, aiohttp.ClientError, KeyError, ValueError, TimeoutError) as exc:
            log.info("OIDC token refused: %s", exc)
            raise Unauthorized(NOT_AUTHORIZED, settings.login_headers()) from None
        user = claims.get(settings.claim or "email") or claims.get("sub")
        if not user:
            raise Unauthorized(NOT_AUTHORIZED, settings.login_headers())
        return str(user)
