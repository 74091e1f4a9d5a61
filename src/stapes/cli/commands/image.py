"""image list|import|build|delete|alias|show."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from stapes.api.errors import BadRequest, RemoteError
from stapes.cli.commands._editing import read_yaml_input
from stapes.cli.main import parse_key_values, run, split_remote, use_remote
from stapes.cli.output import format_option, human_size, print_object, print_rows, when
from stapes.client import multipart
from stapes.client.instance_server import InstanceServer
from stapes.client.operation import RemoteOperation
from stapes.images import builder, streams_tree, vm_builder
from stapes.images import oci as oci_images
from stapes.images import recipe as image_recipe

COLUMNS = [
    "ALIAS",
    "FINGERPRINT",
    "PUBLIC",
    "DESCRIPTION",
    "ARCHITECTURE",
    "TYPE",
    "SIZE",
    "UPLOAD DATE",
]


@click.group()
def image() -> None:
    """Manage images."""


def _row(img: dict[str, Any]) -> list[str]:
    names = [a["name"] for a in img.get("aliases") or []]
    aliases = min(names, key=len) if names else ""  # the shortest, others counted, as incus
    if len(names) > 1:
        aliases += f" ({len(names) - 1} more)"
    kind = "CONTAINER" if img["type"] == "container" else "VIRTUAL-MACHINE"
    return [
        aliases,
        img["fingerprint"][:12],
        "yes" if img["public"] else "no",
        img.get("properties", {}).get("description", ""),
        img["architecture"],
        kind,
        f"{img['size'] / 1024 / 1024:.2f}MiB",  # as incus image list: always MiB
        when(img["uploaded_at"]),
    ]


@image.command(name="list")
@format_option
def list_images(fmt: str) -> None:
    """List images (of an image server too: stapes image list SERVER:)."""
    from stapes.cli import main as cli_main
    from stapes.client.remotes import Remotes

    remotes = Remotes()
    remote = cli_main._remote or remotes.default
    if remotes.get(remote).protocol == "simplestreams":
        try:
            images = remotes.stream_images(remote)
        except RemoteError as exc:
            raise click.ClickException(exc.message) from None
        print_rows(COLUMNS, [_row(i) for i in images], images, fmt)
        return

    def go(server: InstanceServer) -> None:
        images = server.images()
        print_rows(COLUMNS, [_row(i) for i in images], images, fmt)

    run(go)


def _import(
    server: InstanceServer, meta: Path, rootfs: Path | None, aliases: tuple[str, ...], public: bool
) -> str:
    op = server.upload_image(meta, rootfs, public=public)
    result = op.wait()
    fingerprint = str((result.get("metadata") or {})["fingerprint"])
    for alias in aliases:
        server.create_alias(alias, fingerprint)
    return fingerprint


@image.command(name="import")
@click.argument("metadata")
@click.argument(
    "rootfs", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--alias", "aliases", multiple=True, help="Alias for the new image (repeatable)")
@click.option("--public", is_flag=True, help="Make the image public")
@click.option(
    "--oci",
    is_flag=True,
    help="METADATA is an OCI image (layout directory, oci/docker archive, oci: or docker://)",
)
def import_image(
    metadata: str, rootfs: Path | None, aliases: tuple[str, ...], public: bool, oci: bool
) -> None:
    """Import an image file (unified tarball, or metadata tarball plus rootfs), or with --oci
    an OCI image as an application container image."""
    if oci:

        def go_oci(server: InstanceServer) -> str:
            with tempfile.TemporaryDirectory(prefix="stapes-oci-", dir="/var/tmp") as tmp:
                out = Path(tmp) / "image.tar.gz"
                asyncio.run(oci_images.to_image(metadata, Path(tmp), out))
                return _import(server, out, None, aliases, public)

        click.echo(f"Image imported with fingerprint: {run(go_oci)}")
        return
    path = Path(metadata)
    if not path.is_file():
        raise click.BadParameter(f"{metadata} is not a file", param_hint="METADATA")
    fingerprint = run(lambda s: _import(s, path, rootfs, aliases, public))
    click.echo(f"Image imported with fingerprint: {fingerprint}")


@image.command()
@click.argument("kind", metavar="busybox|debian/VERSION|RECIPE.yaml")
@click.option("--variant", default="", help="Recipe variant (debian: default or cloud)")
@click.option("--alias", "aliases", multiple=True, help="Alias for the new image (repeatable)")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Also keep the image file here (an Incus unified tarball)",
)
@click.option(
    "--streams",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also add the image to a static simplestreams tree in this directory",
)
@click.option(
    "--vm", is_flag=True, help="Build a virtual-machine image (debian: the recipe's vm variant)"
)
def build(
    kind: str,
    variant: str,
    aliases: tuple[str, ...],
    output: Path | None,
    streams: Path | None,
    vm: bool,
) -> None:
    """Build an image offline from the host (busybox) or the Debian mirror (a built-in recipe
    or your own YAML one, a copy of src/stapes/images/recipes/debian.yaml), and import it."""

    def say(text: str) -> None:
        click.echo(text, err=True)

    def go(server: InstanceServer) -> str:
        with tempfile.TemporaryDirectory(prefix="stapes-build-", dir="/var/tmp") as tmp:
            work = Path(tmp) / "image"
            work.mkdir()
            out = Path(tmp) / "image.tar.gz"
            if vm:
                if output is not None or streams is not None:
                    raise BadRequest("--vm images are imported only (no --output or --streams)")
                if kind == "busybox":
                    meta, disk = asyncio.run(vm_builder.build_busybox_vm(work, say))
                elif kind.startswith("debian/"):
                    version = kind.split("/", 1)[1]
                    recipe = image_recipe.builtin("debian", variant or "vm", version)
                    build = vm_builder.build_debian_vm(version, work, say, recipe)
                    meta, disk = asyncio.run(build)
                elif kind.endswith((".yaml", ".yml")):
                    recipe = image_recipe.load(Path(kind), variant or "vm")
                    meta, disk = asyncio.run(vm_builder.build_debian_vm("", work, say, recipe))
                else:
                    raise BadRequest(f"Unknown image kind {kind!r}: use busybox or debian/12")
                say("Importing the image")
                return _import(server, meta, disk, aliases, False)
            if kind == "busybox":
                asyncio.run(builder.build_busybox(work, out, say))
            elif kind.startswith("debian/"):
                version = kind.split("/", 1)[1]
                recipe = image_recipe.builtin("debian", variant, version)
                asyncio.run(builder.build_debian(version, work, out, say, recipe))
            elif kind.endswith((".yaml", ".yml")):
                recipe = image_recipe.load(Path(kind), variant)
                asyncio.run(builder.build_debian("", work, out, say, recipe))
            else:
                raise BadRequest(
                    f"Unknown image kind {kind!r}: use busybox, debian/12 or a recipe file"
                )
            if output is not None:
                shutil.copyfile(out, output)
            if streams is not None:
                asyncio.run(streams_tree.add(streams, out, list(aliases)))
                say(f"Added to the simplestreams tree in {streams}")
            say("Importing the image")
            return _import(server, out, None, aliases, False)

    fingerprint = run(go)
    click.echo(f"Image built and imported with fingerprint: {fingerprint}")


@image.command()
@click.argument("images", nargs=-1, required=True)
def delete(images: tuple[str, ...]) -> None:
    """Delete images (by alias or fingerprint)."""

    def go(server: InstanceServer) -> None:
        for name in images:
            server.delete_image(_fingerprint(server, name)).wait()

    run(go)


def _fingerprint(server: InstanceServer, name: str) -> str:
    try:
        return str((server.alias(name))["target"])
    except RemoteError:
        return str((server.image(name))["fingerprint"])


@image.command()
@click.argument("name")
def show(name: str) -> None:
    """Show an image's properties."""

    def go(server: InstanceServer) -> None:
        print_object(server.image(_fingerprint(server, name)))

    run(go)


@image.group()
def alias() -> None:
    """Manage image aliases."""


@alias.command(name="create")
@click.argument("name")
@click.argument("fingerprint")
@click.option("--description", default="")
def alias_create(name: str, fingerprint: str, description: str) -> None:
    """Create an alias for an image."""
    run(lambda s: s.create_alias(name, fingerprint, description))


@alias.command(name="delete")
@click.argument("name")
def alias_delete(name: str) -> None:
    """Delete an image alias."""
    run(lambda s: s.delete_alias(name))


@alias.command(name="rename")
@click.argument("name")
@click.argument("new_name")
def alias_rename(name: str, new_name: str) -> None:
    """Rename an image alias."""
    run(
        lambda s: s.conn.request(
            "POST", f"/1.0/images/aliases/{quote(name, safe='')}", json_body={"name": new_name}
        )
    )


@alias.command(name="list")
@format_option
def alias_list(fmt: str) -> None:
    """List image aliases."""

    def go(server: InstanceServer) -> None:
        aliases = server.aliases()
        rows = [[a["name"], a["target"][:12], a["type"].upper(), a["description"]] for a in aliases]
        print_rows(["ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION"], rows, aliases, fmt)

    run(go)


IMAGE_WRITABLE = ("auto_update", "properties", "public", "expires_at", "profiles")


@image.command()
@click.argument("name")
def edit(name: str) -> None:
    """Edit an image's properties, public and auto_update flags, expiry and profiles as YAML
    ($EDITOR, or YAML on stdin)."""

    def go(server: InstanceServer) -> None:
        fingerprint = _fingerprint(server, name)
        _, envelope, etag = server.conn.raw("GET", f"/1.0/images/{fingerprint}")
        current = {k: envelope["metadata"][k] for k in IMAGE_WRITABLE}
        body = {**current, **read_yaml_input(current)}
        headers = {"If-Match": etag} if etag else None
        server.conn.request("PUT", f"/1.0/images/{fingerprint}", json_body=body, headers=headers)

    run(go)


@image.command()
@click.argument("name")
def info(name: str) -> None:
    """Show an image's details: fingerprint, size, architecture, aliases, properties."""

    def go(server: InstanceServer) -> None:
        img = server.image(_fingerprint(server, name))
        print_object(
            {
                "fingerprint": img["fingerprint"],
                "size": human_size(img["size"]),
                "architecture": img["architecture"],
                "type": img["type"],
                "public": img["public"],
                "cached": img["cached"],
                "auto_update": img["auto_update"],
                "created": img["created_at"],
                "uploaded": img["uploaded_at"],
                "last_used": img["last_used_at"],
                "aliases": [a["name"] for a in img["aliases"]],
                "properties": img["properties"],
                "profiles": img["profiles"],
            }
        )

    run(go)


@image.command()
@click.argument("name")
def refresh(name: str) -> None:
    """Ask an image's server for a newer version now (images pulled by alias)."""

    def go(server: InstanceServer) -> None:
        fingerprint = _fingerprint(server, name)
        started = server.conn.request("POST", f"/1.0/images/{fingerprint}/refresh", json_body={})
        done = RemoteOperation(server.conn, started).wait()["metadata"]
        if done["refreshed"]:
            click.echo(f"Image updated to {done['fingerprint']}")
        else:
            click.echo("Image already up to date")

    run(go)


@image.command(name="export")
@click.argument("name")
@click.argument("target", required=False, default="")
def export_image(name: str, target: str) -> None:
    """Download an image's files: the unified tarball to TARGET (default: its own file name),
    or a split image's metadata to TARGET and its rootfs to TARGET.root."""

    def go(server: InstanceServer) -> None:
        fingerprint = _fingerprint(server, name)
        where = Path(target).parent if target else Path(".")
        partial = Path(tempfile.mkstemp(dir=where, prefix=".export-")[1])
        try:
            _, headers = server.conn.download_with_headers(
                f"/1.0/images/{fingerprint}/export", partial
            )
            kind = headers.get("Content-Type", "")
            if kind.startswith("multipart/"):
                meta = Path(target or f"{fingerprint}.tar")
                rootfs = meta.with_name(meta.name + ".root")
                boundary = kind.split("boundary=", 1)[1].strip('"')
                targets = {"metadata": meta, "rootfs": rootfs, "rootfs.img": rootfs}  # VMs: .img
                written = multipart.split(partial, boundary, targets)
                if len(written) != 2 or written[0] != "metadata":
                    raise RemoteError("The export did not hold a metadata and a rootfs part", 500)
                click.echo(f"Image exported to {meta} and {rootfs}")
            else:
                disposition = headers.get("Content-Disposition", "")
                own = disposition.split("filename=", 1)[-1].strip('"') if disposition else ""
                path = Path(target or Path(own).name or f"{fingerprint}.tar")
                partial.rename(path)
                click.echo(f"Image exported to {path}")
        finally:
            partial.unlink(missing_ok=True)

    run(go)


@image.command(name="copy")
@click.argument("source")
@click.argument("target", required=False, default="")
@click.option("--alias", "aliases", multiple=True, help="Alias of the copy (repeatable)")
@click.option("--public", is_flag=True, help="Make the copy public")
@click.option("--auto-update", is_flag=True, help="Keep the copy updated from the source")
def copy_image(
    source: str, target: str, aliases: tuple[str, ...], public: bool, auto_update: bool
) -> None:
    """Copy REMOTE:IMAGE (alias or fingerprint) into [TARGET:] (default: the default remote);
    the target daemon downloads it from the source server."""
    from stapes.client.remotes import Remotes

    remote, name = split_remote(source)
    if remote is None:
        raise click.UsageError("Name the source as REMOTE:IMAGE (an image server or a remote)")
    target_remote = split_remote(target)[0] if target else None
    use_remote(target_remote)

    def go(server: InstanceServer) -> None:
        remotes = Remotes()
        pulled: dict[str, Any] = {"type": "image", "mode": "pull", **remotes.image_source(remote)}
        if remotes.get(remote).public:
            pulled["alias"] = name
        else:
            pulled.update(remotes.private_image(remote, name))
        body = {
            "source": pulled,
            "aliases": [{"name": a} for a in aliases],
            "public": public,
            "auto_update": auto_update,
        }
        op = RemoteOperation(
            server.conn, server.conn.request("POST", "/1.0/images", json_body=body)
        )
        done = op.wait()
        click.echo(f"Image copied with fingerprint {done['metadata']['fingerprint']}")

    run(go)


@click.command()
@click.argument("source")
@click.argument("properties", nargs=-1)
@click.option("--alias", "aliases", multiple=True, help="Alias of the new image (repeatable)")
@click.option("--public", is_flag=True, help="Make the image public")
@click.option("--compression", default="", help="gzip (default), xz, zstd, bzip2, lz4 or none")
def publish(
    source: str, properties: tuple[str, ...], aliases: tuple[str, ...], public: bool,
    compression: str,
) -> None:  # fmt: skip
    """Make an image of INSTANCE (stopped) or INSTANCE/SNAPSHOT [KEY=VALUE properties...]."""
    props = parse_key_values(properties, "KEY=VALUE")
    body = {
        "source": {"type": "snapshot" if "/" in source else "instance", "name": source},
        "aliases": [{"name": a} for a in aliases],
        "public": public,
        "compression_algorithm": compression,
        "properties": props,
    }

    def go(server: InstanceServer) -> None:
        started = server.conn.request("POST", "/1.0/images", json_body=body)
        done = RemoteOperation(server.conn, started).wait()
        click.echo(f"Instance published with fingerprint: {done['metadata']['fingerprint']}")

    run(go)


COMMANDS = [image, publish]
