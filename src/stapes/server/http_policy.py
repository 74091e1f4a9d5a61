"""What the server's core.https_* keys say about HTTP itself: the CORS headers a browser
client gets (core.https_allowed_origin, _methods, _headers, _credentials), OPTIONS answered
as Incus answers it, and the proxies trusted to name the client's address
(core.https_trusted_proxy, through X-Forwarded-For)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from stapes.config.validate import parse_bool


@dataclass(frozen=True)
class HttpPolicy:
    allowed_origin: str = ""
    allowed_methods: str = ""
    allowed_headers: str = ""
    allowed_credentials: bool = False
    trusted_proxies: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: dict[str, str]) -> HttpPolicy:
        proxies = config.get("core.https_trusted_proxy", "")
        return cls(
            config.get("core.https_allowed_origin", ""),
            config.get("core.https_allowed_methods", ""),
            config.get("core.https_allowed_headers", ""),
            parse_bool(config.get("core.https_allowed_credentials", "") or "false"),
            frozenset(_canonical(p) for p in proxies.split(",") if p.strip()),
        )

    def cors_headers(self, origin: str) -> dict[str, str]:
        """The headers a response to a request from ``origin`` carries (none without one)."""
        if not origin:
            return {}
        headers = {}
        if self.allowed_origin:
            headers["Access-Control-Allow-Origin"] = self.allowed_origin
        if self.allowed_methods:
            headers["Access-Control-Allow-Methods"] = self.allowed_methods
        if self.allowed_headers:
            headers["Access-Control-Allow-Headers"] = self.allowed_headers
        if self.allowed_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def client_address(self, peer: str, forwarded_for: str) -> str:
        """The client's address: the one a trusted proxy names in X-Forwarded-For (its first
        entry), else the connection's peer."""
        host = _host_of(peer)
        if forwarded_for and host in self.trusted_proxies:
            first = forwarded_for.split(",")[0].strip()
            try:
                return str(ipaddress.ip_address(first))
            except ValueError:
                return peer
        return peer


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return address.strip()


def _host_of(peer: str) -> str:
    """``1.2.3.4:5`` or ``[::1]:5`` -> the IP address."""
    host = peer.rsplit(":", 1)[0] if peer.count(":") == 1 or peer.startswith("[") else peer
    return _canonical(host.strip("[]"))


def policy_middleware(get_policy: Any) -> Any:
    """CORS headers on every answer to a request with an Origin, and OPTIONS answered at once
    (200, no body), as Incus does."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        policy: HttpPolicy = get_policy(request)
        headers = policy.cors_headers(request.headers.get("Origin", ""))
        if request.method == "OPTIONS":
            return web.Response(status=200, headers=headers)
        response: web.StreamResponse = await handler(request)
        if headers and not response.prepared:
            response.headers.update(headers)
        return response

    return middleware
