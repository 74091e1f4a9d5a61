"""Images: unified and split uploads, fingerprints, aliases, delete."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.helpers import Daemon, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def _build(daemon: Daemon, tmp_path: Path) -> Path:
    out = tmp_path / "bb.tar.gz"
    alias = unique("tmp")
    daemon.cli("image", "build", "busybox", "--alias", alias, "--output", str(out))
    fingerprint = daemon.request("GET", f"/1.0/images/aliases/{alias}").metadata["target"]
    daemon.ok(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))
    return out


def test_unified_upload_fingerprint_and_aliases(daemon: Daemon, tmp_path: Path) -> None:
    tarball = _build(daemon, tmp_path)
    data = tarball.read_bytes()
    fingerprint = hashlib.sha256(data).hexdigest()
    bad = daemon.request("POST", "/1.0/images", raw=data, headers={"X-Incus-fingerprint": "0" * 64})
    assert bad.status == 400 and "Fingerprint mismatch" in bad.json()["error"]
    meta = daemon.ok(
        daemon.request("POST", "/1.0/images", raw=data, headers={"X-Incus-public": "true"})
    )
    assert meta["metadata"]["fingerprint"] == fingerprint
    try:
        image = daemon.request("GET", f"/1.0/images/{fingerprint[:12]}").metadata
        assert image["fingerprint"] == fingerprint and image["public"] is True
        assert image["type"] == "container" and image["size"] == len(data)
        assert image["properties"]["os"] == "busybox"
        dup = daemon.request("POST", "/1.0/images", raw=data)
        assert dup.status == 409
        alias = unique("al")
        assert (
            daemon.request(
                "POST", "/1.0/images/aliases", {"name": alias, "target": fingerprint}
            ).status
            == 201
        )
        assert (
            daemon.request(
                "POST", "/1.0/images/aliases", {"name": alias, "target": fingerprint}
            ).status
            == 409
        )
        slashed = f"{alias}/12"
        daemon.request("POST", "/1.0/images/aliases", {"name": slashed, "target": fingerprint})
        got = daemon.request("GET", f"/1.0/images/aliases/{alias}%2F12").metadata
        assert got["target"] == fingerprint
        renamed = unique("al")
        assert (
            daemon.request("POST", f"/1.0/images/aliases/{alias}", {"name": renamed}).status == 201
        )
        names = [
            a["name"]
            for a in daemon.request("GET", f"/1.0/images/{fingerprint}").metadata["aliases"]
        ]
        assert sorted(names) == sorted([renamed, slashed])
        assert (
            daemon.request(
                "PATCH", f"/1.0/images/{fingerprint}", {"properties": {"extra": "1"}}
            ).status
            == 200
        )
        props = daemon.request("GET", f"/1.0/images/{fingerprint}").metadata["properties"]
        assert props["extra"] == "1" and props["os"] == "busybox"
        assert daemon.request("DELETE", f"/1.0/images/aliases/{renamed}").status == 200
        assert daemon.request("GET", f"/1.0/images/aliases/{renamed}").status == 404
    finally:
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))
    assert daemon.request("GET", f"/1.0/images/{fingerprint}").status == 404
    assert not (daemon.root / "images" / fingerprint).exists()


def test_split_image_with_squashfs_rootfs(daemon: Daemon, tmp_path: Path) -> None:
    tarball = _build(daemon, tmp_path)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(unpacked)], check=True)
    meta = tmp_path / "meta.tar.xz"
    with tarfile.open(meta, "w:xz") as tar:
        tar.add(unpacked / "metadata.yaml", "metadata.yaml")
        tar.add(unpacked / "templates", "templates")
    rootfs = tmp_path / "rootfs.squashfs"
    subprocess.run(
        [
            "mksquashfs",
            str(unpacked / "rootfs"),
            str(rootfs),
            "-noappend",
            "-quiet",
            "-comp",
            "gzip",
        ],
        check=True,
        capture_output=True,
    )
    alias = unique("split")
    daemon.cli("image", "import", str(meta), str(rootfs), "--alias", alias)
    expected = hashlib.sha256(meta.read_bytes() + rootfs.read_bytes()).hexdigest()
    assert daemon.request("GET", f"/1.0/images/aliases/{alias}").metadata["target"] == expected
    # exported as it came: a multipart body with the metadata and rootfs parts
    exported = daemon.request("GET", f"/1.0/images/{expected}/export")
    assert exported.status == 200
    boundary = exported.headers["Content-Type"].split("boundary=")[1].strip('"').encode()
    parts = [p for p in exported.body.split(b"--" + boundary) if b"Content-Disposition" in p]
    bodies = {}
    for part in parts:
        head, _, data = part.partition(b"\r\n\r\n")
        field = head.split(b'name="')[1].split(b'"')[0].decode()
        bodies[field] = data.removesuffix(b"\r\n")
    assert bodies == {"metadata": meta.read_bytes(), "rootfs": rootfs.read_bytes()}
    # the parts named as Incus names them: meta-<fingerprint><ext>, <fingerprint><ext>
    assert f'filename="{expected}.squashfs"'.encode() in exported.body
    assert f'filename="meta-{expected}.tar'.encode() in exported.body
    daemon.cli("image", "export", alias, str(tmp_path / "exported"))
    assert (tmp_path / "exported").read_bytes() == meta.read_bytes()
    assert (tmp_path / "exported.root").read_bytes() == rootfs.read_bytes()
    name = daemon.launch(alias)
    try:
        out = daemon.cli("exec", name, "--", "cat", "/etc/hostname").stdout
        assert out.strip() == name
    finally:
        daemon.force_delete(name)
        daemon.ok(daemon.request("DELETE", f"/1.0/images/{expected}"))


def test_upload_without_metadata_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as tar:
        (tmp_path / "file").write_text("x")
        tar.add(tmp_path / "file", "file")
    resp = daemon.request("POST", "/1.0/images", raw=junk.read_bytes())
    assert resp.status == 400 and "metadata.yaml" in resp.json()["error"]
    assert not list((daemon.root / "images").glob("upload-*"))


def test_publish_an_instance_and_a_snapshot(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    """A stopped instance and a snapshot become images that launch with what was in them;
    owners inside are the container's own ids (not the host's shifted ones); a running
    instance, a bad name or compression are refused and leave no image."""
    source = daemon.launch(busybox)
    published: list[str] = []
    try:
        daemon.cli(
            "exec", source, "--", "sh", "-c", "echo first > /root/mark; chown 1000:1000 /root/mark"
        )
        resp = daemon.request(
            "POST", "/1.0/images", {"source": {"type": "instance", "name": source}}
        )
        assert daemon.wait(resp).status == 400  # running
        daemon.ok(daemon.request("POST", f"/1.0/instances/{source}/snapshots", {"name": "s0"}))
        daemon.cli("exec", source, "--", "sh", "-c", "echo second > /root/mark")
        daemon.force_stop(source)
        alias = unique("pub")
        out = daemon.cli(
            "publish", source, "--alias", alias, "--compression", "xz", "os=demo"
        ).stdout
        fingerprint = out.strip().rsplit(" ", 1)[-1]
        published.append(fingerprint)
        image = daemon.request("GET", f"/1.0/images/{fingerprint}").metadata
        assert image["properties"]["os"] == "demo" and image["aliases"][0]["name"] == alias
        exported = tmp_path / "published.tar.xz"
        daemon.cli("image", "export", alias, str(exported))
        assert hashlib.sha256(exported.read_bytes()).hexdigest() == fingerprint
        body = {"source": {"type": "snapshot", "name": f"{source}/s0"}}
        snap = daemon.ok(daemon.request("POST", "/1.0/images", body))["metadata"]["fingerprint"]
        published.append(snap)
        for image_ref, expected in ((alias, "second"), (snap, "first")):
            key = "alias" if image_ref == alias else "fingerprint"
            name = unique("from")
            body = {"name": name, "source": {"type": "image", key: image_ref}, "start": True}
            daemon.ok(daemon.request("POST", "/1.0/instances", body))
            try:
                got = daemon.cli("exec", name, "--", "cat", "/root/mark").stdout.strip()
                owner = daemon.cli("exec", name, "--", "stat", "-c", "%u:%g", "/root/mark").stdout
                assert got == expected and owner.strip() == "1000:1000"
            finally:
                daemon.force_delete(name)
        before = daemon.request("GET", "/1.0/images").metadata
        for body, error in [
            ({"source": {"type": "instance", "name": "nosuch"}}, "not found"),
            ({"source": {"type": "snapshot", "name": source}}, "snapshot"),
            (
                {"source": {"type": "instance", "name": source}, "compression_algorithm": "rar"},
                "compression",
            ),
        ]:
            resp = daemon.request("POST", "/1.0/images", body)
            assert resp.status in (400, 404) and error in resp.json()["error"], body
        assert daemon.request("GET", "/1.0/images").metadata == before
    finally:
        daemon.force_delete(source)
        for fingerprint in published:
            daemon.wait(daemon.request("DELETE", f"/1.0/images/{fingerprint}"))


def test_image_cli_info_edit_and_alias_rename(daemon: Daemon, busybox: str) -> None:
    fingerprint = daemon.request("GET", f"/1.0/images/aliases/{busybox}").metadata["target"]
    info = daemon.cli("image", "info", busybox).stdout
    assert fingerprint in info and "architecture" in info
    edited = "properties:\n  os: busybox\n  note: edited\npublic: false\nauto_update: false\n"
    daemon.cli("image", "edit", busybox, input=edited.encode())
    props = daemon.request("GET", f"/1.0/images/{fingerprint}").metadata["properties"]
    assert props["note"] == "edited"
    first, second = unique("al"), unique("al")
    daemon.cli("image", "alias", "create", first, fingerprint)
    daemon.cli("image", "alias", "rename", first, second)
    assert daemon.request("GET", f"/1.0/images/aliases/{second}").metadata["target"] == fingerprint
    assert daemon.request("GET", f"/1.0/images/aliases/{first}").status == 404
    daemon.cli("image", "alias", "delete", second)


def test_an_images_profiles_apply_when_none_are_asked_for(daemon: Daemon, busybox: str) -> None:
    fingerprint = daemon.request("GET", f"/1.0/images/aliases/{busybox}").metadata["target"]
    profile = unique("imgp")
    assert daemon.request("POST", "/1.0/profiles", {"name": profile}).status in (200, 201)
    resp = daemon.request("PATCH", f"/1.0/images/{fingerprint}", {"profiles": ["default", profile]})
    assert resp.status == 200
    name = unique("c")
    try:
        body = {"name": name, "source": {"type": "image", "alias": busybox}}
        daemon.ok(daemon.request("POST", "/1.0/instances", body))
        got = daemon.request("GET", f"/1.0/instances/{name}").metadata["profiles"]
        assert got == ["default", profile]
    finally:
        daemon.force_delete(name)
        daemon.request("PATCH", f"/1.0/images/{fingerprint}", {"profiles": ["default"]})
        daemon.request("DELETE", f"/1.0/profiles/{profile}")
