"""/1.0/images and /1.0/images/aliases: upload (unified or split), list, get, update, delete."""

from __future__ import annotations

import platform
import urllib.parse
from typing import Any

from aiohttp import BodyPartReader, web

from stapes.api.errors import BadRequest, NotFound
from stapes.api.image import (
    ImageAliasesPost,
    ImageAliasPost,
    ImageAliasPut,
    ImagePut,
    ImagesPost,
)
from stapes.config.server_keys import server_value
from stapes.db.images import ImageRow, get_alias, list_aliases
from stapes.db.server_config import get_config
from stapes.db.snapshots import get_snapshot
from stapes.images import remote_fetch
from stapes.images.refresh import refresh
from stapes.images.remote_fetch import RemoteImage
from stapes.images.store import Upload
from stapes.instance.publish import publish
from stapes.server import filter as api_filter
from stapes.server.auth import identify
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    flag,
    incus_header,
    json_body,
    patched,
    project_of,
    recursion,
    state,
)
from stapes.server.image_download import export_response
from stapes.server.response import Async, Result, Sync, created
from stapes.storage.backups import compression

CHUNK = 1024 * 1024


def _public_only(request: web.Request) -> bool:
    """Untrusted clients see the public images (and their aliases) only, as in Incus."""
    return not identify(request).trusted


def _image(request: web.Request) -> ImageRow:
    """The image the URL names: any for trusted clients; for others a public one, or the one
    an image secret was made for (``?secret=``, as a daemon pulling it presents)."""
    st = state(request)
    row = st.images.get(project_of(request), request.match_info["fingerprint"])
    secret = request.query.get("secret", "")
    if _public_only(request) and not row.public and not st.image_secrets.allows(row, secret):
        raise NotFound(f"Image {request.match_info['fingerprint']!r} not found")
    return row


async def refresh_image(request: web.Request) -> Result:
    """POST /1.0/images/{fingerprint}/refresh: ask the image's server for a newer one now."""
    st = state(request)
    row = st.images.get(project_of(request), request.match_info["fingerprint"])

    async def act(op: Any) -> None:
        new = await refresh(st.images, row, st.pools.delete_image_volumes)
        op.update_metadata({"refreshed": new.fingerprint != row.fingerprint,
                            "fingerprint": new.fingerprint})  # fmt: skip

    return Async(
        st.operations.start(
            act,
            description="Refreshing image",
            project=row.project,
            resources={"images": [f"/1.0/images/{row.fingerprint}"]},
        )
    )


async def image_secret(request: web.Request) -> Result:
    """POST /1.0/images/{fingerprint}/secret: a secret another daemon may fetch this (private)
    image with; an operation that ends when the secret is used or cancelled."""
    st = state(request)
    row = st.images.get(project_of(request), request.match_info["fingerprint"])
    return Async(st.image_secrets.new(row, st.operations))


async def list_images(request: web.Request) -> Result:
    st = state(request)
    project = None if flag(request, "all-projects") else project_of(request)
    if _public_only(request):
        project = project_of(request)
    rows = st.images.list_images(project)
    if _public_only(request):
        rows = [r for r in rows if r.public]
    rendered = [st.images.render(r) for r in rows]
    if request.query.get("filter"):
        flt = api_filter.parse(request.query["filter"])
        rendered = [r for r in rendered if api_filter.matches(flt, r)]
    if recursion(request) >= 1:
        return Sync(rendered)
    return Sync([f"/1.0/images/{r['fingerprint']}" for r in rendered])


async def _receive(stream: Any, path: Any, upload: Upload) -> None:
    with open(path, "wb") as f:
        while True:
            chunk = (
                await stream.read_chunk(CHUNK)
                if isinstance(stream, BodyPartReader)
                else await stream.read(CHUNK)
            )
            if not chunk:
                break
            upload.hasher.update(chunk)
            f.write(chunk)


async def create_image(request: web.Request) -> Result:
    st = state(request)
    project = project_of(request)
    if request.content_type == "application/json":
        return await _pull_image(request, await body_as(request, ImagesPost))
    split = request.content_type.startswith("multipart/")
    upload = st.images.new_upload(split)
    try:
        if split:
            reader = await request.multipart()
            seen: set[str] = set()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "metadata":
                    await _receive(part, upload.meta, upload)
                elif part.name in ("rootfs", "rootfs.img"):
                    if "metadata" not in seen:
                        raise BadRequest("The metadata part must come before the rootfs part")
                    upload.vm = part.name == "rootfs.img"
                    await _receive(part, upload.rootfs, upload)
                else:
                    raise BadRequest(
                        f"Unknown part {part.name!r} in the image upload "
                        "(expected metadata and rootfs)"
                    )
                seen.add(str(part.name))
            if seen != {"metadata", "rootfs"} and seen != {"metadata", "rootfs.img"}:
                raise BadRequest("A split image upload needs a metadata and a rootfs part")
        else:
            await _receive(request.content, upload.meta, upload)
            if upload.meta.stat().st_size == 0:
                raise BadRequest("Empty image upload")
        properties = dict(urllib.parse.parse_qsl(incus_header(request, "properties")))
        alias_list = urllib.parse.unquote(incus_header(request, "aliases"))
        aliases = [a for a in alias_list.split(",") if a]
        row = await st.images.register(
            upload,
            project=project,
            filename=incus_header(request, "filename"),
            public=incus_header(request, "public").lower() in ("1", "true"),
            properties=properties,
            expected=incus_header(request, "fingerprint"),
            aliases=aliases,
        )
    finally:
        upload.cleanup()
    fingerprint = row.fingerprint

    async def done(op: Any) -> None:
        op.update_metadata({"fingerprint": fingerprint, "size": row.size})

    return Async(
        st.operations.start(
            done,
            description="Downloading image",
            project=project,
            resources={"images": [f"/1.0/images/{fingerprint}"]},
        )
    )


async def _pull_image(request: web.Request, req: ImagesPost) -> Result:
    """Copy an image from a server (simplestreams or Incus) into the store, in an operation
    whose metadata reports the download's progress."""
    st = state(request)
    project = project_of(request)
    source = req.source
    if source.type in ("instance", "snapshot", "container", "virtual-machine"):
        return _publish(request, req)  # the last two: older clients' names (pylxd's publish)
    if source.type != "image" or not source.server:
        raise BadRequest(
            f"Creating images from a {source.type or 'JSON'} source is not supported yet: "
            "upload an image file, or pull one (source type image with a server)"
        )
    remote = RemoteImage.of(source)
    remote_fetch.check_source(remote)
    for alias in req.aliases:
        st.images.check_alias_free(project, alias.name)

    async def act(op: Any) -> None:
        def progress(percent: int, speed: float, label: str) -> None:
            op.progress("download", percent, speed, label)

        row = await remote_fetch.fetch(
            st.images, project, remote, platform.machine(), cached=False, progress=progress
        )
        st.images.finish_pull(row, [(a.name, a.description) for a in req.aliases], req.public,
                              req.auto_update)  # fmt: skip
        op.update_metadata({"fingerprint": row.fingerprint, "size": row.size})

    return Async(
        st.operations.start(
            act,
            description="Downloading image",
            project=project,
            resources={"images": []},
        )
    )


def _publish(request: web.Request, req: ImagesPost) -> Result:
    """An instance (stopped) or a snapshot made into an image, in an operation."""
    st = state(request)
    project = project_of(request)
    instance_name, _, snap_name = req.source.name.partition("/")
    if not instance_name or (req.source.type == "snapshot") != bool(snap_name):
        raise BadRequest(
            "Name the instance (source type instance, name c1) or the snapshot (type snapshot, "
            "name c1/snap0) to publish"
        )
    row = st.instances.get(project, instance_name)
    snapshot = get_snapshot(st.db, row.id, row.name, snap_name) if snap_name else None
    compression.check(req.compression_algorithm)
    for alias in req.aliases:
        st.images.check_alias_free(project, alias.name)

    async def act(op: Any) -> None:
        async with st.locks(row.project, row.name):
            image = await publish(
                st.instances,
                st.images,
                row,
                snapshot,
                algorithm=req.compression_algorithm
                or server_value(get_config(st.db), "images.compression_algorithm"),
                public=req.public,
                properties=req.properties,
                aliases=[a.name for a in req.aliases],
            )
        op.update_metadata({"fingerprint": image.fingerprint, "size": image.size})

    return Async(
        st.operations.start(
            act,
            description="Publishing instance",
            project=project,
            resources={"instances": [f"/1.0/instances/{row.name}"]},
        )
    )


async def get_image(request: web.Request) -> Result:
    body = state(request).images.render(_image(request))
    return Sync(body, etag=_writable(body))


async def export_image(request: web.Request) -> web.StreamResponse:
    row = _image(request)
    state(request).image_secrets.use(request.query.get("secret", ""))
    if not identify(request).member:  # a member asking has none: it must not ask back
        await state(request).images.ensure_files(row)
    return export_response(state(request).images, row)


def _writable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("auto_update", "properties", "public", "expires_at", "profiles")}


async def put_image(request: web.Request) -> Result:
    st = state(request)
    row = st.images.get(project_of(request), request.match_info["fingerprint"])
    check_etag(request, _writable(st.images.render(row)))
    put = await body_as(request, ImagePut)
    st.images.update(row, put.public, put.auto_update, put.properties, put.profiles, put.expires_at)
    return Sync()


async def patch_image(request: web.Request) -> Result:
    st = state(request)
    row = st.images.get(project_of(request), request.match_info["fingerprint"])
    current = _writable(st.images.render(row))
    check_etag(request, current)
    put = await patched(request, current, ("properties",), ImagePut)
    # as Incus's PATCH: expires_at is changed by a PUT only
    st.images.update(row, put.public, put.auto_update, put.properties, put.profiles)
    return Sync()


async def delete_image(request: web.Request) -> Result:
    st = state(request)
    row = st.images.get(project_of(request), request.match_info["fingerprint"])

    async def act(op: Any) -> None:
        st.images.delete(row)
        await st.pools.delete_image_volumes(row.fingerprint)

    return Async(
        st.operations.start(
            act,
            description="Deleting image",
            project=row.project,
            resources={"images": [f"/1.0/images/{row.fingerprint}"]},
        )
    )


def _alias(project: str, st: Any, name: str) -> dict[str, Any]:
    alias = get_alias(st.db, project, name)
    return {
        "name": alias.name,
        "description": alias.description,
        "target": alias.fingerprint,
        "type": alias.type,
    }


async def list_image_aliases(request: web.Request) -> Result:
    st = state(request)
    project = project_of(request)
    aliases = list_aliases(st.db, project)
    if _public_only(request):
        public = {r.fingerprint for r in st.images.list_images(project) if r.public}
        aliases = [a for a in aliases if a.fingerprint in public]
    if recursion(request) >= 1:
        return Sync(
            [
                {
                    "name": a.name,
                    "description": a.description,
                    "target": a.fingerprint,
                    "type": a.type,
                }
                for a in aliases
            ]
        )
    return Sync([f"/1.0/images/aliases/{urllib.parse.quote(a.name, safe='')}" for a in aliases])


async def create_image_alias(request: web.Request) -> Result:
    st = state(request)
    req = await body_as(request, ImageAliasesPost)
    st.images.create_alias(project_of(request), req.name, req.target, req.description)
    return created(f"/1.0/images/aliases/{urllib.parse.quote(req.name, safe='')}")


async def get_image_alias(request: web.Request) -> Result:
    st = state(request)
    body = _alias(project_of(request), st, request.match_info["alias"])
    if _public_only(request) and not st.images.get(project_of(request), body["target"]).public:
        raise NotFound(f"Image alias {request.match_info['alias']!r} not found")
    return Sync(body, etag={"description": body["description"], "target": body["target"]})


async def put_image_alias(request: web.Request) -> Result:
    st = state(request)
    project, name = project_of(request), request.match_info["alias"]
    current = _alias(project, st, name)
    check_etag(request, {"description": current["description"], "target": current["target"]})
    req = await body_as(request, ImageAliasPut)
    st.images.update_alias(project, name, req.target, req.description)
    return Sync()


async def patch_image_alias(request: web.Request) -> Result:
    st = state(request)
    project, name = project_of(request), request.match_info["alias"]
    current = _alias(project, st, name)
    patch = await json_body(request)
    if not isinstance(patch, dict):
        raise BadRequest("Request body must be a JSON object")
    st.images.update_alias(
        project,
        name,
        str(patch.get("target", current["target"])),
        str(patch.get("description", current["description"])),
    )
    return Sync()


async def rename_image_alias(request: web.Request) -> Result:
    st = state(request)
    req = await body_as(request, ImageAliasPost)
    st.images.rename_alias(project_of(request), request.match_info["alias"], req.name)
    return created(f"/1.0/images/aliases/{urllib.parse.quote(req.name, safe='')}")


async def delete_image_alias(request: web.Request) -> Result:
    st = state(request)
    st.images.delete_alias(project_of(request), request.match_info["alias"])
    return Sync()


ENDPOINTS = [
    Endpoint("/images", get=Action(list_images, allow_untrusted=True), post=Action(create_image)),
    Endpoint(
        "/images/aliases",
        get=Action(list_image_aliases, allow_untrusted=True),
        post=Action(create_image_alias),
    ),
    Endpoint(
        "/images/aliases/{alias:.+}",
        get=Action(get_image_alias, allow_untrusted=True),
        put=Action(put_image_alias),
        patch=Action(patch_image_alias),
        post=Action(rename_image_alias),
        delete=Action(delete_image_alias),
    ),
    Endpoint("/images/{fingerprint}/export", get=Action(export_image, allow_untrusted=True)),
    Endpoint("/images/{fingerprint}/secret", post=Action(image_secret)),
    Endpoint("/images/{fingerprint}/refresh", post=Action(refresh_image)),
    Endpoint(
        "/images/{fingerprint}",
        get=Action(get_image, allow_untrusted=True),
        put=Action(put_image),
        patch=Action(patch_image),
        delete=Action(delete_image),
    ),
]
