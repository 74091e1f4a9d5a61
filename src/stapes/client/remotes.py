"""The client's remotes: ``$STAPES_CONF`` (default ``~/.config/stapes``) holds ``config.yml``
(the remotes and the default one), the client certificate (``client.crt``/``client.key``, made
on first use) and each remote's server certificate (``servercerts/NAME.crt``), pinned by
fingerprint on every connection. ``local`` is always the unix socket."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import yaml

from stapes import certs
from stapes.api.errors import RemoteError
from stapes.client.connection import Connection, HttpsTarget, Target, UnixTarget, default_socket
from stapes.config.validate import split_address

LOCAL = "local"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

if TYPE_CHECKING:  # pydantic models: imported where used (the CLI starts faster)
    from stapes.api.certificate import TrustToken


def config_dir() -> Path:
    explicit = os.environ.get("STAPES_CONF")
    return Path(explicit) if explicit else Path.home() / ".config" / "stapes"


@dataclass
class Remote:
    name: str
    addr: str
    """``unix://`` or ``https://HOST:PORT``."""
    protocol: str = "incus"
    public: bool = False


def fetch_certificate(host: str, port: int, timeout: float = 15) -> str:
    """The PEM certificate a server shows (not checked: the caller pins it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True) or b""
    except OSError as exc:
        raise RemoteError(f"Cannot reach {host}:{port}: {exc}", 503) from None
    return ssl.DER_cert_to_PEM_cert(der)


def parse_url(url: str) -> tuple[str, int]:
    """``https://HOST[:PORT]``, or a bare ``HOST[:PORT]`` (port 8443 by default)."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise RemoteError(f"Invalid remote address {url!r}: use https://HOST[:PORT]", 400)
        url = parts.netloc
    try:
        host, port = split_address(url)
    except ValueError as exc:
        raise RemoteError(f"Invalid remote address: {exc}", 400) from None
    if not host:
        raise RemoteError(f"Invalid remote address {url!r}: the host is missing", 400)
    return host, port


class Remotes:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.file = self.directory / "config.yml"
        data: dict[str, Any] = {}
        if self.file.exists():
            data = yaml.safe_load(self.file.read_text()) or {}
        self.default = str(data.get("default-remote") or LOCAL)
        self.projects: dict[str, str] = {
            str(k): str(val) for k, val in (data.get("projects") or {}).items()
        }
        """The project each remote's commands use (``stapes project switch``)."""
        self.remotes: dict[str, Remote] = {
            name: Remote(
                name,
                str(r.get("addr", "")),
                str(r.get("protocol", "incus")),
                bool(r.get("public", False)),
            )
            for name, r in (data.get("remotes") or {}).items()
        }

    def names(self) -> list[str]:
        return [LOCAL, *sorted(self.remotes)]

    def get(self, name: str) -> Remote:
        if name == LOCAL:
            return Remote(LOCAL, "unix://")
        found = self.remotes.get(name)
        if found is None:
            raise RemoteError(f"The remote {name!r} doesn't exist", 404)
        return found

    def save(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {
            "default-remote": self.default,
            "projects": self.projects,
            "remotes": {
                r.name: {"addr": r.addr, "protocol": r.protocol, "public": r.public}
                for r in self.remotes.values()
            },
        }
        partial = self.file.with_name("config.yml.partial")
        partial.write_text(yaml.safe_dump(data, sort_keys=True))
        partial.rename(self.file)

    # -- certificates ---------------------------------------------------------------------------

    def client_certificate(self) -> tuple[Path, Path]:
        """(client.crt, client.key), made on first use."""
        cert, key = self.directory / "client.crt", self.directory / "client.key"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        certs.load_or_create(cert, key, f"stapes@{socket.gethostname()}")
        return cert, key

    def server_certificate(self, name: str) -> Path:
        return self.directory / "servercerts" / f"{name}.crt"

    def image_source(self, name: str) -> dict[str, str]:
        """What a daemon needs to pull images from remote ``name`` (the source of an instance
        or of an image copy): its URL, protocol and pinned certificate."""
        remote = self.get(name)
        if remote.addr.startswith("unix://"):
            raise RemoteError(f"Remote {name!r} is this host's daemon: no server to pull from", 400)
        pinned = self.server_certificate(name)
        return {
            "server": remote.addr,
            "protocol": remote.protocol,
            "certificate": pinned.read_text() if pinned.exists() else "",
        }

    def stream_images(self, name: str) -> list[dict[str, Any]]:
        """The images of a simplestreams remote, shaped as /1.0/images lists them."""
        remote = self.get(name)
        host, port = parse_url(remote.addr)
        pinned = self.server_certificate(name)
        fingerprint = certs.fingerprint(certs.parse(pinned.read_bytes())) if pinned.exists() else ""
        target = HttpsTarget(host, port, fingerprint)
        conn = target.http() if fingerprint else http.client.HTTPSConnection(host, port, timeout=60)
        try:
            conn.request("GET", "/streams/v1/images.json")
            resp = conn.getresponse()
            if resp.status != 200:
                raise RemoteError(f"{remote.addr} has no simplestreams tree ({resp.status})", 404)
            tree = json.loads(resp.read())
        except OSError as exc:
            raise RemoteError(f"Cannot reach {remote.addr}: {exc}", 503) from None
        finally:
            conn.close()
        return _stream_images(tree)

    def private_image(self, name: str, image: str) -> dict[str, str]:
        """For an image on an Incus-protocol remote this client is trusted by: its fingerprint
        and a secret the pulling daemon presents (it is not trusted by that remote itself)."""
        with Connection(self.target(name)) as conn:
            try:
                fingerprint = conn.request("GET", f"/1.0/images/aliases/{quote(image, safe='')}")[
                    "target"
                ]
            except RemoteError:
                fingerprint = conn.request("GET", f"/1.0/images/{quote(image, safe='')}")[
                    "fingerprint"
                ]
            op = conn.request("POST", f"/1.0/images/{fingerprint}/secret", json_body={})
        return {"fingerprint": fingerprint, "secret": op["metadata"]["secret"]}

    def add_image_server(self, name: str, url: str, protocol: str, *, accept: bool) -> str:
        """A read-only image server (simplestreams, or a public Incus one): nothing to enrol.
        Its certificate is pinned when accepted, else it must pass the system's CAs."""
        if not _NAME.fullmatch(name) or name == LOCAL:
            raise RemoteError(f"Invalid remote name {name!r}", 400)
        if name in self.remotes:
            raise RemoteError(f"Remote {name} exists as <{self.remotes[name].addr}>", 409)
        if "://" not in url:
            raise RemoteError(f"Invalid remote address {url!r}: give the scheme (https://)", 400)
        if url.startswith("http://"):  # a plain HTTP image server or registry: nothing to pin
            self.remotes[name] = Remote(name, url.rstrip("/"), protocol, public=True)
            self.save()
            return ""
        host, port = parse_url(url)
        pem = fetch_certificate(host, port)
        fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
        if accept:
            pinned = self.server_certificate(name)
            pinned.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            pinned.write_text(pem)
        else:
            try:
                with socket.create_connection((host, port), timeout=15) as raw:
                    ssl.create_default_context().wrap_socket(raw, server_hostname=host).close()
            except (OSError, ssl.SSLError) as exc:
                raise RemoteError(
                    f"The certificate of {host}:{port} (fingerprint {fingerprint}) is not trusted "
                    f"by this system ({exc}): add --accept-certificate to pin it",
                    403,
                ) from None
        self.remotes[name] = Remote(name, url.rstrip("/"), protocol, public=True)
        self.save()
        return fingerprint

    def target(self, name: str) -> Target:
        remote = self.get(name)
        if remote.public:
            raise RemoteError(
                f"Remote {name!r} is an image server ({remote.protocol}): it only serves images",
                400,
            )
        if remote.addr.startswith("unix://"):
            path = remote.addr.removeprefix("unix://")
            return UnixTarget(path or str(default_socket()))
        host, port = parse_url(remote.addr)
        pinned = self.server_certificate(name)
        if not pinned.exists():
            raise RemoteError(f"No certificate for remote {name!r}: remove and add it again", 400)
        cert, key = self.client_certificate()
        fingerprint = certs.fingerprint(certs.parse(pinned.read_bytes()))
        return HttpsTarget(host, port, fingerprint, str(cert), str(key))

    # -- changes --------------------------------------------------------------------------------

    def add(self, name: str, url: str, *, token: str = "", accept: bool = False) -> str:
        """Add a remote by URL (its certificate accepted when ``accept``) or by trust token (the
        token pins the certificate); with a token, enrol this client. Returns the server's
        fingerprint."""
        if not _NAME.fullmatch(name) or name == LOCAL:
            raise RemoteError(f"Invalid remote name {name!r}", 400)
        if name in self.remotes:
            raise RemoteError(f"Remote {name} exists as <{self.remotes[name].addr}>", 409)
        parsed: TrustToken | None = None
        if token:
            try:
                from stapes.api.certificate import TrustToken

                parsed = TrustToken.decode(token)
            except ValueError:
                raise RemoteError("Invalid trust token", 400) from None
        addresses = [url] if url else (parsed.addresses if parsed else [])
        if not addresses:
            raise RemoteError("Give the remote's address or a trust token", 400)
        errors = []
        for address in addresses:
            try:
                return self._add_at(name, address, parsed, token, accept)
            except RemoteError as exc:
                if exc.status == 403 or len(addresses) == 1:
                    raise
                errors.append(f"{address}: {exc.message}")
        raise RemoteError("No address of the token answered: " + "; ".join(errors), 503)

    def _add_at(
        self, name: str, address: str, parsed: TrustToken | None, token: str, accept: bool
    ) -> str:
        host, port = parse_url(address)
        pem = fetch_certificate(host, port)
        fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
        if parsed is not None and parsed.fingerprint != fingerprint:
            raise RemoteError(
                f"The certificate of {host}:{port} does not match the token's fingerprint", 403
            )
        if parsed is None and not accept:
            raise RemoteError(
                f"Certificate fingerprint: {fingerprint}: not accepted (use "
                "--accept-certificate, or add the remote with a trust token)",
                403,
            )
        cert, key = self.client_certificate()
        target = HttpsTarget(host, port, fingerprint, str(cert), str(key))
        with Connection(target) as conn:
            info = conn.request("GET", "/1.0")
            if info.get("auth") != "trusted":
                if not token:
                    raise RemoteError(
                        f"This client is not trusted by {host}:{port}: add it with a trust "
                        "token (stapes config trust add NAME on the server)",
                        403,
                    )
                conn.request(
                    "POST", "/1.0/certificates", json_body={"type": "client", "trust_token": token}
                )
                if conn.request("GET", "/1.0").get("auth") != "trusted":
                    raise RemoteError("The server did not trust this client", 403)
        url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        pinned = self.server_certificate(name)
        pinned.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pinned.write_text(pem)
        self.remotes[name] = Remote(name, url)
        self.save()
        return fingerprint

    def remove(self, name: str) -> None:
        self.get(name)
        if name == LOCAL:
            raise RemoteError("The local remote cannot be removed", 400)
        del self.remotes[name]
        self.projects.pop(name, None)
        if self.default == name:
            self.default = LOCAL
        self.server_certificate(name).unlink(missing_ok=True)
        self.save()

    def rename(self, name: str, new_name: str) -> None:
        remote = self.get(name)
        if name == LOCAL:
            raise RemoteError("The local remote cannot be renamed", 400)
        if not _NAME.fullmatch(new_name) or new_name in self.names():
            raise RemoteError(f"Invalid or taken remote name {new_name!r}", 400)
        del self.remotes[name]
        remote.name = new_name
        self.remotes[new_name] = remote
        old_cert = self.server_certificate(name)
        if old_cert.exists():
            old_cert.rename(self.server_certificate(new_name))
        if self.default == name:
            self.default = new_name
        self.save()

    def project(self, name: str) -> str:
        return self.projects.get(name, "")

    def set_project(self, name: str, project: str) -> None:
        self.get(name)
        self.projects[name] = project
        self.save()

    def set_url(self, name: str, url: str) -> None:
        """Move a remote to another address (its pinned certificate is kept: the server there
        must be the same one)."""
        remote = self.get(name)
        if name == LOCAL:
            raise RemoteError("The local remote has no URL to change", 400)
        parse_url(url)
        if "://" not in url:
            raise RemoteError(f"Invalid remote address {url!r}: give the scheme (https://)", 400)
        remote.addr = url.rstrip("/")
        self.save()

    def switch(self, name: str) -> None:
        self.get(name)
        self.default = name
        self.save()


def _stream_images(tree: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for product in (tree.get("products") or {}).values():
        versions = sorted((product.get("versions") or {}).items())
        for index, (version, entry) in enumerate(versions):
            items = entry.get("items") or {}
            unified = items.get("incus_combined.tar.gz")
            meta = items.get("incus.tar.xz") or {}
            fingerprint = (unified or {}).get("sha256") or meta.get(
                "combined_squashfs_sha256", meta.get("combined_rootxz_sha256", "")
            )
            if not fingerprint:
                continue
            latest = index == len(versions) - 1
            aliases = str(product.get("aliases", "")).split(",") if latest else []
            found.append(
                {
                    "aliases": [{"name": a} for a in aliases if a],
                    "fingerprint": fingerprint,
                    "public": True,
                    "properties": {
                        "os": product.get("os", ""),
                        "release": product.get("release", ""),
                        "variant": product.get("variant", ""),
                        "description": f"{product.get('os', '')} {product.get('release', '')} "
                        f"{product.get('arch', '')} ({product.get('variant', '')}) ({version})",
                    },
                    "architecture": product.get("arch", ""),
                    "type": "container",
                    "size": sum(int(i.get("size", 0)) for i in items.values()),
                    "uploaded_at": version,
                }
            )
    return found
