"""OCI images as application containers. An OCI image (a layout directory, an oci-archive or a
docker-archive tarball; a registry where one is reachable) is copied by skopeo into a scratch
layout, unpacked by umoci into a runtime bundle, and turned into an Incus image: its rootfs,
and its process (entrypoint + cmd, env, working directory, user) as image properties. An
instance of such an image runs that process as PID 1 (``oci.*`` keys, ``environment.*``)."""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from stapes.api.errors import BadRequest, MissingHostFeature
from stapes.host.run import RunError, run
from stapes.storage.backups.index import dump_yaml

TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:", "docker://")


def _reference(source: str) -> str:
    """A skopeo source: given as such, or a local layout directory / archive file."""
    if source.startswith(TRANSPORTS):
        return source
    path = Path(source)
    if path.is_dir():
        if not (path / "oci-layout").is_file():
            raise BadRequest(f"{source} is a directory but not an OCI image layout (no oci-layout)")
        return f"oci:{path}"
    if path.is_file():
        return f"oci-archive:{path}"
    raise BadRequest(
        f"No OCI image at {source!r}: give a layout directory, a tarball, or an oci: or "
        "docker:// reference"
    )


async def digest(reference: str, tls_verify: bool = True, env: dict[str, str] | None = None) -> str:
    """The manifest digest of a registry image (what says two pulls are the same image).
    ``env``: proxy variables for skopeo."""
    try:
        _, out, _ = await run(
            ["skopeo", "inspect", f"--tls-verify={str(tls_verify).lower()}", reference],
            timeout=300,
            env=env,
        )
    except RunError as exc:
        raise BadRequest(
            f"Could not read the OCI image {reference}: {exc.stderr.strip()}"
        ) from None
    return str(json.loads(out).get("Digest", ""))


async def _copy(
    reference: str, layout: Path, tls_verify: bool = True, env: dict[str, str] | None = None
) -> None:
    tls = (
        [f"--src-tls-verify={str(tls_verify).lower()}"] if reference.startswith("docker://") else []
    )
    try:
        await run(["skopeo", "copy", "--insecure-policy", *tls, reference, f"oci:{layout}:stapes"],
                  timeout=3600, env=env)  # fmt: skip
    except RunError as exc:
        if reference.startswith("oci-archive:"):  # perhaps a docker-archive
            docker = "docker-archive:" + reference.removeprefix("oci-archive:")
            try:
                await run(["skopeo", "copy", "--insecure-policy", docker, f"oci:{layout}:stapes"],
                          timeout=3600)  # fmt: skip
                return
            except RunError:
                pass
        raise BadRequest(
            f"Could not read the OCI image {reference}: {exc.stderr.strip()}"
        ) from None


def process_properties(config: dict[str, Any]) -> dict[str, str]:
    """The image properties that describe the bundle's process."""
    process = config.get("process") or {}
    args = [str(a) for a in process.get("args") or []]
    if not args:
        raise BadRequest("The OCI image has no entrypoint or cmd: nothing to run")
    user = process.get("user") or {}
    return {
        "type": "oci",
        "oci.entrypoint": shlex.join(args),
        "oci.cwd": str(process.get("cwd") or "/"),
        "oci.uid": str(user.get("uid", 0)),
        "oci.gid": str(user.get("gid", 0)),
        "oci.env": json.dumps([str(e) for e in process.get("env") or []]),
    }


async def to_image(
    source: str,
    work: Path,
    out: Path,
    description: str = "",
    *,
    tls_verify: bool = True,
    extra: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Write an Incus unified image tarball at ``out`` from an OCI image (``extra``: more
    properties, such as the registry digest)."""
    for tool, package in (("skopeo", "skopeo"), ("umoci", "umoci")):
        if shutil.which(tool) is None:
            raise MissingHostFeature(f"OCI images need {tool}: apt-get install {package}")
    reference = _reference(source)
    layout, bundle = work / "layout", work / "bundle"
    await _copy(reference, layout, tls_verify, env)
    try:
        await run(["umoci", "unpack", "--image", f"{layout}:stapes", str(bundle)], timeout=3600)
    except RunError as exc:
        raise BadRequest(f"Could not unpack the OCI image: {exc.stderr.strip()}") from None
    config = json.loads((bundle / "config.json").read_text())
    properties = process_properties(config)
    properties["description"] = description or f"OCI image {source}"
    properties["os"] = "oci"
    properties.update(extra or {})
    meta = {
        "architecture": platform.machine(),
        "creation_date": int(time.time()),
        "properties": properties,
    }
    (bundle / "metadata.yaml").write_text(dump_yaml(meta))
    await run(
        ["tar", "-czf", str(out), "--numeric-owner", "--xattrs", "-C", str(bundle),
         "metadata.yaml", "rootfs"],
        timeout=3600,
    )  # fmt: skip


def instance_keys(properties: dict[str, str], config: dict[str, str]) -> dict[str, str]:
    """What an instance of an OCI image gets: its process (unless the user set the keys) and the
    image's environment under ``environment.*`` (user values win)."""
    if properties.get("type") != "oci":
        return {}
    keys = {"volatile.container.oci": "true"}
    for key in ("oci.entrypoint", "oci.cwd", "oci.uid", "oci.gid"):
        if properties.get(key) and not config.get(key):
            keys[key] = properties[key]
    try:
        env = json.loads(properties.get("oci.env") or "[]")
    except json.JSONDecodeError:
        env = None
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise BadRequest("The image's oci.env property is not a JSON list of NAME=VALUE strings")
    for entry in env:
        name, sep, value = entry.partition("=")
        if sep and f"environment.{name}" not in config:
            keys[f"environment.{name}"] = value
    return keys
