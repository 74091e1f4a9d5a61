"""Images from another server: a simplestreams server (``streams/v1/images.json`` and its
items) or an Incus-protocol one (a public image's ``/1.0/images/{fp}/export``). Files are
downloaded into an upload of the local store, hashed as they arrive (each simplestreams item
against its sha256, the whole against the fingerprint), and registered; a failed download
leaves nothing. The server's certificate is pinned when the caller gives it (self-signed image
servers), else checked against the system's CAs."""

from __future__ import annotations

import hashlib
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import aiohttp

from stapes import certs
from stapes.api.errors import BadRequest, NotFound, StapesError
from stapes.api.image import ImageSource
from stapes.api.instance import InstanceSource
from stapes.db.images import (
    ImageRow,
    ImageSourceRow,
    find_images_by_prefix,
    list_images,
    set_source,
)
from stapes.db.server_config import get_config
from stapes.images import oci
from stapes.images.proxies import Proxies
from stapes.images.store import ImageStore, Upload
from stapes.images.streams_server import ARCHITECTURES

Progress = Callable[[int, float, str], None]
"""(percent, bytes per second, label)."""
PROTOCOLS = ("simplestreams", "incus", "lxd", "oci")


@dataclass
class RemoteImage:
    server: str
    protocol: str
    alias: str = ""
    fingerprint: str = ""
    certificate: str = ""
    """The server's certificate (PEM): pinned by fingerprint when given."""
    secret: str = ""
    """An image secret the server gave the client (private images of an Incus server)."""

    @classmethod
    def of(cls, source: InstanceSource | ImageSource) -> RemoteImage:
        """From an instance's or an image copy's source (simplestreams when not said)."""
        return cls(
            source.server,
            source.protocol or "simplestreams",
            source.alias,
            source.fingerprint,
            source.certificate,
            source.secret,
        )


@dataclass
class Found:
    fingerprint: str
    urls: list[tuple[str, str]] = field(default_factory=list)
    """(url, sha256 or "") per file: one for a unified image, metadata then rootfs for split."""
    aliases: list[str] = field(default_factory=list)


def check_source(source: RemoteImage) -> None:
    if not source.server.startswith(("https://", "http://")):
        raise BadRequest(
            f"Invalid image server {source.server!r}: give its URL with the scheme (https://...)"
        )
    if source.protocol not in PROTOCOLS:
        raise BadRequest(
            f"Invalid image server protocol {source.protocol!r}: use simplestreams, incus or oci"
        )
    if not (source.alias or source.fingerprint):
        raise BadRequest("Give the image's alias or fingerprint on the server")


def _ssl(source: RemoteImage) -> ssl.SSLContext | aiohttp.Fingerprint | bool:
    if not source.certificate or not source.server.startswith("https://"):
        return True
    try:
        pinned = certs.fingerprint(certs.parse(source.certificate))
    except ValueError:
        raise BadRequest("Invalid certificate for the image server") from None
    return aiohttp.Fingerprint(bytes.fromhex(pinned))


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        if resp.status == 404:
            raise NotFound(f"{url} not found on the image server")
        resp.raise_for_status()
        return await resp.json(content_type=None)


def _base(server: str) -> str:
    return server.rstrip("/") + "/"


async def _find_simplestreams(
    session: aiohttp.ClientSession, source: RemoteImage, arch: str
) -> Found:
    base = _base(source.server)
    index = await _json(session, urljoin(base, "streams/v1/index.json"))
    path = index.get("index", {}).get("images", {}).get("path", "streams/v1/images.json")
    products = (await _json(session, urljoin(base, path))).get("products", {})
    wanted_arch = ARCHITECTURES.get(arch, arch)
    candidates = []
    for product in products.values():
        aliases = [a for a in str(product.get("aliases", "")).split(",") if a]
        if product.get("arch") != wanted_arch:
            continue
        for version, entry in product.get("versions", {}).items():
            items = entry.get("items", {})
            found = _from_items(base, items, aliases)
            if found is None:
                continue
            if (source.alias and source.alias in aliases) or (
                source.fingerprint and found.fingerprint.startswith(source.fingerprint)
            ):
                candidates.append((version, found))
    if not candidates:
        what = source.alias or source.fingerprint
        raise NotFound(f"Image {what!r} not found on {source.server} (for {wanted_arch})")
    return max(candidates, key=lambda c: c[0])[1]


def _from_items(base: str, items: dict[str, Any], aliases: list[str]) -> Found | None:
    """A version's files: a unified tarball, or metadata plus a squashfs/tarball rootfs."""
    unified = items.get("incus_combined.tar.gz") or items.get("lxd_combined.tar.gz")
    if unified:
        url = urljoin(base, unified["path"])
        return Found(unified["sha256"], [(url, unified["sha256"])], aliases)
    meta = items.get("incus.tar.xz") or items.get("lxd.tar.xz")
    if not meta:
        return None
    for ftype, combined in (("squashfs", "combined_squashfs_sha256"),
                            ("root.tar.xz", "combined_rootxz_sha256")):  # fmt: skip
        rootfs = next((i for i in items.values() if i.get("ftype") == ftype), None)
        if rootfs and meta.get(combined):
            return Found(
                meta[combined],
                [
                    (urljoin(base, meta["path"]), meta["sha256"]),
                    (urljoin(base, rootfs["path"]), rootfs["sha256"]),
                ],
                aliases,
            )
    return None


async def _find_incus(session: aiohttp.ClientSession, source: RemoteImage) -> Found:
    base = _base(source.server)
    fingerprint = source.fingerprint
    if source.alias:
        path = f"1.0/images/aliases/{quote(source.alias, safe='')}"
        alias = await _json(session, urljoin(base, path))
        fingerprint = alias["metadata"]["target"]
    query = f"?secret={quote(source.secret, safe='')}" if source.secret else ""
    info = (await _json(session, urljoin(base, f"1.0/images/{fingerprint}{query}")))["metadata"]
    export = urljoin(base, f"1.0/images/{info['fingerprint']}/export{query}")
    return Found(info["fingerprint"], [(export, "")], [a["name"] for a in info.get("aliases", [])])


class _Meter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress
        self.start = self.last = time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.progress is not None and (now - self.last > 0.5 or self.done == self.total):
            self.last = now
            speed = self.done / max(now - self.start, 1e-6)
            percent = int(100 * self.done / self.total) if self.total else 0
            self.progress(percent, speed, f"{percent}% ({_size(speed)}/s)")


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.1f}{unit}"
        count /= 1000
    return f"{count:.1f}TB"


async def _download(
    session: aiohttp.ClientSession, url: str, target: Path, upload: Upload, meter: _Meter
) -> str:
    """One file into ``target`` (hashed into the upload too); its own sha256."""
    digest = hashlib.sha256()
    async with session.get(url) as resp:
        resp.raise_for_status()
        meter.total += resp.content_length or 0
        if resp.content_type.startswith("multipart/"):
            return await _download_parts(resp, upload, meter)
        with target.open("wb") as out:
            async for chunk in resp.content.iter_chunked(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                upload.hasher.update(chunk)
                meter.add(len(chunk))
    return digest.hexdigest()


async def _download_parts(resp: aiohttp.ClientResponse, upload: Upload, meter: _Meter) -> str:
    """An Incus export of a split image: metadata and rootfs parts."""
    reader = aiohttp.MultipartReader.from_response(resp)
    async for part in reader:
        if not isinstance(part, aiohttp.BodyPartReader):
            continue
        target = upload.meta if part.name == "metadata" else upload.rootfs
        if target is None:
            upload.rootfs = target = upload.meta.with_name(upload.meta.name + ".rootfs")
        with target.open("wb") as out:
            while chunk := await part.read_chunk(1 << 20):
                out.write(chunk)
                upload.hasher.update(chunk)
                meter.add(len(chunk))
    return ""


async def fetch(
    store: ImageStore,
    project: str,
    source: RemoteImage,
    arch: str,
    *,
    cached: bool,
    progress: Progress | None = None,
) -> ImageRow:
    """The image, from the local store when it is there already, else downloaded."""
    check_source(source)
    proxies = Proxies.from_config(get_config(store.db))
    if source.protocol == "oci":
        return await _fetch_oci(store, project, source, cached, proxies)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)
    connector = aiohttp.TCPConnector(ssl=_ssl(source))
    proxy = proxies.for_url(source.server)
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, proxy=proxy
        ) as session:
            if source.protocol == "simplestreams":
                found = await _find_simplestreams(session, source, arch)
            else:
                found = await _find_incus(session, source)
            local = find_images_by_prefix(store.db, project, found.fingerprint)
            if local:
                return local[0]
            row = await _pull(store, session, project, found, cached, progress)
    except StapesError:
        raise
    except aiohttp.ServerFingerprintMismatch:
        raise BadRequest(
            f"The certificate of {source.server} is not the one given: refusing to download"
        ) from None
    except (aiohttp.ClientError, TimeoutError, OSError, KeyError, ValueError) as exc:
        raise BadRequest(f"Could not get the image from {source.server}: {exc}") from None
    if not source.secret:  # what auto-update asks the server again (a secret is single-use)
        record = ImageSourceRow(
            row.id, source.server, source.protocol, source.alias, source.certificate
        )
        with store.db.transaction():
            set_source(store.db, record)
    return row


async def _fetch_oci(
    store: ImageStore, project: str, source: RemoteImage, cached: bool, proxies: Proxies
) -> ImageRow:
    """An image of an OCI registry: skopeo and umoci make it an Incus image; a second pull of
    the same manifest digest is the image pulled before."""
    host = source.server.split("://", 1)[1].rstrip("/")
    name = source.alias or source.fingerprint
    reference = f"docker://{host}/{name}"
    verify = source.server.startswith("https://")
    env = proxies.environment()
    wanted = await oci.digest(reference, verify, env)
    for row in list_images(store.db, project):
        if wanted and row.properties.get("oci.digest") == wanted:
            return row
    scratch = Path(tempfile.mkdtemp(dir=store.paths.images, prefix=".oci-"))
    try:
        out = scratch / "image.tar.gz"
        await oci.to_image(reference, scratch, out, tls_verify=verify,
                           extra={"oci.digest": wanted, "oci.reference": reference},
                           env=env)  # fmt: skip
        upload = Upload(meta=out)
        with out.open("rb") as f:
            while chunk := f.read(1 << 20):
                upload.hasher.update(chunk)
        row = await store.register(
            upload, project=project, filename="", public=False, properties={}
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if cached:
        store.mark_cached(row)
    return row


async def _pull(
    store: ImageStore,
    session: aiohttp.ClientSession,
    project: str,
    found: Found,
    cached: bool,
    progress: Progress | None,
) -> ImageRow:
    upload = store.new_upload(split=len(found.urls) == 2)
    meter = _Meter(0, progress)
    try:
        targets = [upload.meta] + ([upload.rootfs] if upload.rootfs is not None else [])
        for (url, sha256), target in zip(found.urls, targets, strict=True):
            got = await _download(session, url, target, upload, meter)
            if sha256 and got != sha256:
                raise BadRequest(f"sha256 mismatch for {url}: got {got}, expected {sha256}")
        row = await store.register(
            upload,
            project=project,
            filename="",
            public=False,
            properties={},
            expected=found.fingerprint,
        )
    finally:
        upload.cleanup()
    if cached:
        store.mark_cached(row)
    return row


async def source_image(
    store: ImageStore, project: str, source: InstanceSource, arch: str
) -> ImageRow:
    """The image an instance is made from: a local one, or one pulled from the server its
    source names (kept in the local store as a cached image)."""
    if not source.server:
        return store.resolve(project, source.alias, source.fingerprint)
    return await fetch(store, project, RemoteImage.of(source), arch, cached=True)
