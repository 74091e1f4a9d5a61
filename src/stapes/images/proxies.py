"""core.proxy_http, core.proxy_https and core.proxy_ignore_hosts: the proxies image downloads
go through, as Incus uses them (NO_PROXY-style exceptions: ``*``, host names with their
subdomains, IP addresses and CIDR ranges)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Proxies:
    http: str = ""
    https: str = ""
    ignore: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, str]) -> Proxies:
        ignored = config.get("core.proxy_ignore_hosts", "")
        return cls(
            config.get("core.proxy_http", ""),
            config.get("core.proxy_https", ""),
            tuple(h.strip().lower() for h in ignored.split(",") if h.strip()),
        )

    def for_url(self, url: str) -> str | None:
        """The proxy a request to ``url`` goes through (None: straight)."""
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http
        if not proxy or self._ignored((parts.hostname or "").lower()):
            return None
        return proxy

    def _ignored(self, host: str) -> bool:
        for entry in self.ignore:
            if entry == "*" or entry == host:
                return True
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
                continue
            except ValueError:
                pass
            domain = entry.lstrip(".")
            if host == domain or host.endswith("." + domain):
                return True
        return False

    def environment(self) -> dict[str, str]:
        """The same settings for programs that read the environment (skopeo)."""
        env = {}
        if self.http:
            env["HTTP_PROXY"] = env["http_proxy"] = self.http
        if self.https:
            env["HTTPS_PROXY"] = env["https_proxy"] = self.https
        if self.ignore:
            env["NO_PROXY"] = env["no_proxy"] = ",".join(self.ignore)
        return env
