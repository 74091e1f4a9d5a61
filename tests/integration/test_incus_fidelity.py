"""Behaviours where tools written for Incus compare what they get: each test states Incus
6.0.4's outcome (checked against the real daemon from incus-anchor) and asserts stapesd's."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon, UnixHTTPConnection, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def _raw(daemon: Daemon, method: str, path: str, body: object = None) -> bytes:
    conn = UnixHTTPConnection(daemon.socket)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        return conn.getresponse().read()
    finally:
        conn.close()


def test_json_is_written_as_gos_encoder_writes_it(daemon: Daemon) -> None:
    """Incus: no blanks after separators, <>& escaped, a newline at the end."""
    raw = _raw(daemon, "GET", "/1.0/instances/no-such-instance")
    assert raw.startswith(b'{"type":"error","status":"","status_code":0,') and raw.endswith(b"}\n")
    assert b'": ' not in raw and b'", "' not in raw
    raw = _raw(daemon, "GET", "/1.0/instances?filter=name+eq+%3Cx%3E%26")
    assert (
        raw == b'{"type":"sync","status":"Success","status_code":200,"operation":"",'
        b'"error_code":0,"error":"","metadata":[]}\n'
    )
    raw = _raw(daemon, "POST", "/1.0/projects", {"name": "a<&>b"})
    assert b"a\\u003c\\u0026\\u003eb" in raw and b"<" not in raw, raw


def test_operations_answer_running_and_go_five_seconds_after_they_end(
    daemon: Daemon, busybox: str
) -> None:
    name = unique("op")
    body = {"name": name, "source": {"type": "image", "alias": "bb"}}
    resp = daemon.request("POST", "/1.0/instances", body)
    assert resp.status == 202
    assert resp.metadata["status"] == "Running" and resp.metadata["status_code"] == 103
    op = resp.json()["operation"]
    try:
        assert daemon.wait(resp).status == 200
        assert daemon.request("GET", op).status == 200  # still there just after
        time.sleep(6)
        assert daemon.request("GET", op).status == 404
    finally:
        daemon.force_delete(name)


def test_ephemeral_instances_go_when_they_stop(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch("bb", ephemeral=True)
    url = f"/1.0/instances/{name}"
    try:
        restarted = daemon.ok(
            daemon.request("PUT", f"{url}/state", {"action": "restart", "force": True})
        )
        assert restarted["status"] == "Success"
        assert daemon.request("GET", url).metadata["status"] == "Running"  # a restart keeps it
        daemon.ok(daemon.request("PUT", f"{url}/state", {"action": "stop", "force": True}))
        assert daemon.request("GET", url).status == 404
        assert not (daemon.root / "storage-pools" / "default" / "containers" / name).exists()
        assert not (daemon.root / "logs" / name).exists()
    finally:
        daemon.force_delete(name)


def test_filters_ignore_case(daemon: Daemon, container: str) -> None:
    """Incus: status=running, Running and RUNNING all match, names too."""
    for wanted in ("running", "Running", "RUNNING"):
        found = daemon.request("GET", f"/1.0/instances?filter=status+eq+{wanted}").metadata
        assert f"/1.0/instances/{container}" in found, wanted
    upper = container.upper()
    assert (
        f"/1.0/instances/{container}"
        in daemon.request("GET", f"/1.0/instances?filter=name+eq+{upper}").metadata
    )


def test_a_mac_already_on_the_network_is_refused_at_start(
    daemon: Daemon, busybox: str, network: tuple[str, str]
) -> None:
    """Incus: 'MAC address "..." already defined on another NIC'."""
    bridge, _ = network
    nic = {"eth0": {"type": "nic", "network": bridge, "name": "eth0"}}
    first = daemon.launch("bb", devices=nic)
    second = unique("mac")
    try:
        mac = daemon.request("GET", f"/1.0/instances/{first}").metadata["config"][
            "volatile.eth0.hwaddr"
        ]
        body = {"name": second, "source": {"type": "image", "alias": "bb"}, "devices": nic,
                "config": {"volatile.eth0.hwaddr": mac}}  # fmt: skip
        daemon.ok(daemon.request("POST", "/1.0/instances", body))
        started = daemon.wait(
            daemon.request("PUT", f"/1.0/instances/{second}/state", {"action": "start"})
        )
        assert started.status == 400, started.body
        assert f"MAC address {mac!r} already defined on another NIC" in started.json()["error"]
    finally:
        daemon.force_delete(second)
        daemon.force_delete(first)


def test_sizes_on_a_dir_pool_are_recorded(daemon: Daemon, busybox: str) -> None:
    """Incus's dir driver accepts a root disk or volume size it cannot enforce (no project
    quotas) and records it; `config device override c root size=...` works."""
    name = daemon.launch("bb", start=False)
    volume = unique("v")
    try:
        override = {
            "devices": {"root": {"type": "disk", "path": "/", "pool": "default", "size": "1GiB"}}
        }
        assert daemon.request("PATCH", f"/1.0/instances/{name}", override).status == 200
        devices = daemon.request("GET", f"/1.0/instances/{name}").metadata["devices"]
        assert devices["root"]["size"] == "1GiB"
        body = {"name": volume, "type": "custom", "config": {"size": "10MiB"}}
        assert daemon.request("POST", "/1.0/storage-pools/default/volumes", body).status == 200
        got = daemon.request("GET", f"/1.0/storage-pools/default/volumes/custom/{volume}").metadata
        assert got["config"]["size"] == "10MiB"
    finally:
        daemon.request("DELETE", f"/1.0/storage-pools/default/volumes/custom/{volume}")
        daemon.force_delete(name)


def test_unsetting_a_device_key_removes_it(daemon: Daemon, busybox: str, tmp_path: Path) -> None:
    """`incus config device unset c d readonly` sends the key empty: Incus drops it."""
    name = daemon.launch("bb", start=False)
    try:
        disk = {"type": "disk", "source": str(tmp_path), "path": "/mnt", "readonly": "true"}
        assert (
            daemon.request("PATCH", f"/1.0/instances/{name}", {"devices": {"d": disk}}).status
            == 200
        )
        unset = {"devices": {"d": {**disk, "readonly": ""}}}
        resp = daemon.request("PATCH", f"/1.0/instances/{name}", unset)
        assert resp.status == 200, resp.body
        got = daemon.request("GET", f"/1.0/instances/{name}").metadata["devices"]["d"]
        assert "readonly" not in got
    finally:
        daemon.force_delete(name)


def test_snapshot_schedules_take_startup_never_and_lists(daemon: Daemon, busybox: str) -> None:
    """Incus: @startup snapshots at each start, @never none, and a comma-separated list of
    cron expressions and aliases."""
    name = daemon.launch("bb", start=False)
    url = f"/1.0/instances/{name}"
    try:
        for schedule in ("0 6 * * *, 0 18 * * *", "@never", "@hourly, 30 2 * * *"):
            resp = daemon.request("PATCH", url, {"config": {"snapshots.schedule": schedule}})
            assert resp.status == 200, (schedule, resp.body)
        bad = daemon.request("PATCH", url, {"config": {"snapshots.schedule": "@sometimes"}})
        assert bad.status == 400 and "@sometimes" in bad.json()["error"]
        resp = daemon.request("PATCH", url, {"config": {"snapshots.schedule": "@startup"}})
        assert resp.status == 200
        daemon.ok(daemon.request("PUT", f"{url}/state", {"action": "start"}))
        assert daemon.request("GET", f"{url}/snapshots").metadata == [f"{url}/snapshots/snap0"]
    finally:
        daemon.force_delete(name)


def test_storage_buckets_answer_as_incus_without_an_object_store(daemon: Daemon) -> None:
    base = "/1.0/storage-pools/default/buckets"
    assert daemon.request("GET", base).metadata == []
    bad = daemon.request("POST", base, {"name": "b1"})
    assert bad.status == 400 and "Bucket name must be between 3 and 63" in bad.json()["error"]
    missing = daemon.request("POST", base, {"name": "bucket1"})
    assert missing.status == 400 and "MinIO" in missing.json()["error"]
    assert daemon.request("GET", f"{base}/bucket1").status == 404
    assert daemon.request("GET", "/1.0/storage-pools/nope/buckets").status == 404


def test_default_texts_are_incus_texts(daemon: Daemon) -> None:
    """Scripts compare these: Incus's words for the default project and profile."""
    assert daemon.request("GET", "/1.0/projects/default").metadata["description"] == (
        "Default Incus project"
    )
    assert daemon.request("GET", "/1.0/profiles/default").metadata["description"] == (
        "Default Incus profile"
    )
    name = unique("p")
    assert daemon.request("POST", "/1.0/projects", {"name": name}).status == 201
    try:
        profile = daemon.request("GET", f"/1.0/profiles/default?project={name}").metadata
        assert profile["description"] == f"Default Incus profile for project {name}"
    finally:
        daemon.request("DELETE", f"/1.0/projects/{name}")


def test_incus_image_export_names_the_file_by_its_compression(
    daemon: Daemon, busybox: str, incus: Any, tmp_path: Path
) -> None:
    fingerprint = daemon.request("GET", "/1.0/images/aliases/bb").metadata["target"]
    out = tmp_path / "out"
    out.mkdir()
    incus("image", "export", "bb", f"{out}/")
    assert [p.name for p in out.iterdir()] == [f"{fingerprint}.tar.gz"]


def test_instance_metadata_and_templates(daemon: Daemon, busybox: str, incus: Any) -> None:
    """incus config metadata show|edit and config template list|create|show|delete."""
    name = daemon.launch("bb", start=False)
    url = f"/1.0/instances/{name}/metadata"
    try:
        got = daemon.request("GET", url)
        meta = got.metadata
        assert meta["architecture"] == "x86_64" and "/etc/hostname" in meta["templates"]
        meta["properties"]["note"] = "edited"
        stale = daemon.request("PUT", url, meta, headers={"If-Match": '"nope"'})
        assert stale.status == 412
        etag = {"If-Match": got.headers["ETag"]}
        assert daemon.request("PUT", url, meta, headers=etag).status == 200
        assert daemon.request("GET", url).metadata["properties"]["note"] == "edited"
        incus("config", "template", "create", name, "motd.tpl")
        templates = f"{url}/templates"
        put = daemon.request("POST", f"{templates}?path=motd.tpl", raw=b"hi {{ instance.name }}",
                             headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert put.status == 200
        assert "motd.tpl" in daemon.request("GET", templates).metadata
        assert (
            incus("config", "template", "show", name, "motd.tpl").stdout == "hi {{ instance.name }}"
        )
        for bad in ("../../etc/passwd", "a/b", ".."):
            resp = daemon.request("GET", f"{templates}?path={bad}")
            assert resp.status == 400 and "Invalid template filename" in resp.json()["error"]
        assert daemon.request("DELETE", f"{templates}?path=motd.tpl").status == 200
        missing = daemon.request("GET", f"{templates}?path=motd.tpl")
        assert missing.status == 404 and missing.json()["error"] == 'Template "motd.tpl" not found'
    finally:
        daemon.force_delete(name)


def test_metadata_symlinks_an_image_shipped_stay_in_the_volume(
    daemon: Daemon, busybox: str
) -> None:
    """A metadata.yaml or templates/ that is a symlink to the host reads and writes inside
    the volume only."""
    name = daemon.launch("bb", start=False)
    volume = daemon.root / "storage-pools" / "default" / "containers" / name
    try:
        (volume / "metadata.yaml").unlink()
        (volume / "metadata.yaml").symlink_to("/etc/hostname")
        got = daemon.request("GET", f"/1.0/instances/{name}/metadata")
        host = Path("/etc/hostname").read_text().strip()
        assert got.status == 400 and "symbolic links" in got.json()["error"], got.body
        assert host not in got.json()["error"]  # refused, never followed to the host's file
        shutil.rmtree(volume / "templates")
        (volume / "templates").symlink_to("/var/tmp")
        marker = unique("tpl")
        daemon.request("POST", f"/1.0/instances/{name}/metadata/templates?path={marker}", raw=b"x",
                       headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert not (Path("/var/tmp") / marker).exists()
    finally:
        daemon.force_delete(name)


def test_a_new_project_gets_incus_defaults_for_the_features_it_does_not_set(
    daemon: Daemon,
) -> None:
    name = unique("p")
    body = {"name": name, "config": {"features.images": "false"}}
    assert daemon.request("POST", "/1.0/projects", body).status == 201
    try:
        config = daemon.request("GET", f"/1.0/projects/{name}").metadata["config"]
        assert config == {
            "features.images": "false",
            "features.profiles": "true",
            "features.storage.buckets": "true",
            "features.storage.volumes": "true",
        }
    finally:
        daemon.request("DELETE", f"/1.0/projects/{name}")


def test_a_put_cannot_delete_the_volatile_idmap_keys(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch("bb", start=False)
    try:
        got = daemon.request("GET", f"/1.0/instances/{name}").metadata
        put = {k: got[k] for k in ("architecture", "devices", "profiles", "description")}
        put["config"] = {
            k: v for k, v in got["config"].items() if not k.startswith("volatile.idmap")
        }
        resp = daemon.request("PUT", f"/1.0/instances/{name}", put)
        assert resp.status == 400
        assert resp.json()["error"] == "Volatile idmap keys can't be deleted by the user"
    finally:
        daemon.force_delete(name)


def test_raw_idmap_both_0_0_needs_no_subuid_line(daemon: Daemon, busybox: str) -> None:
    """Incus starts an unprivileged container with raw.idmap "both 0 0" on a host whose
    /etc/subuid gives root no line for id 0: the caller's own id is always mappable."""
    name = daemon.launch("bb", config={"raw.idmap": "both 0 0"})
    try:
        state = daemon.request("GET", f"/1.0/instances/{name}").metadata
        assert state["status"] == "Running"
        uid_map = Path(f"/proc/{_init_pid(daemon, name)}/uid_map").read_text().split()
        assert uid_map[:3] == ["0", "0", "1"]
    finally:
        daemon.force_delete(name)


def _init_pid(daemon: Daemon, name: str) -> int:
    return int(daemon.request("GET", f"/1.0/instances/{name}/state").metadata["pid"])


def test_a_missing_backup_answers_incus_text(daemon: Daemon, busybox: str) -> None:
    name = daemon.launch("bb", start=False)
    try:
        resp = daemon.request("GET", f"/1.0/instances/{name}/backups/nope")
        assert resp.status == 404 and resp.json()["error"] == "Instance backup not found"
    finally:
        daemon.force_delete(name)


def test_profiles_that_give_two_root_disks_are_refused(daemon: Daemon, busybox: str) -> None:
    profile = unique("r2")
    name = daemon.launch("bb", start=False)
    try:
        root2 = {"root2": {"type": "disk", "path": "/", "pool": "default"}}
        made = daemon.request("POST", "/1.0/profiles", {"name": profile, "devices": root2})
        assert made.status == 201, made.body
        resp = daemon.request("PATCH", f"/1.0/instances/{name}", {"profiles": ["default", profile]})
        refused = daemon.wait(resp) if resp.status == 202 else resp
        assert refused.status == 400
        assert "More than one root device found" in refused.json()["error"]
        got = daemon.request("GET", f"/1.0/instances/{name}").metadata
        assert got["profiles"] == ["default"]
    finally:
        daemon.force_delete(name)
        daemon.request("DELETE", f"/1.0/profiles/{profile}")


def test_an_instance_volume_takes_user_keys(daemon: Daemon, busybox: str) -> None:
    """incus storage volume set POOL container/NAME user.foo=bar works (Incus keeps it on the
    instance's volume); a key that belongs to the root disk is refused."""
    name = daemon.launch("bb", start=False)
    url = f"/1.0/storage-pools/default/volumes/container/{name}"
    try:
        assert daemon.cli("storage", "volume", "set", "default", f"container/{name}",
                          "user.foo=bar").returncode == 0  # fmt: skip
        patched = daemon.request("PATCH", url, {"description": "root of it"})
        assert patched.status == 200, patched.body
        got = daemon.request("GET", url).metadata
        assert got["config"] == {"user.foo": "bar"} and got["description"] == "root of it"
        resp = daemon.request("PATCH", url, {"config": {"size": "1GiB"}})
        assert resp.status == 400 and "size" in resp.json()["error"]
        daemon.request("PUT", url, {"config": {}, "description": ""})
        assert daemon.request("GET", url).metadata["config"] == {}
    finally:
        daemon.force_delete(name)


def test_expiry_times_come_back_as_they_were_sent(daemon: Daemon, busybox: str) -> None:
    """Incus keeps a client's offset and nanoseconds; an instance snapshot PUT without
    expires_at keeps it, a volume snapshot PUT without it clears it; times it makes are UTC
    with the fraction's trailing zeros dropped (Go's RFC 3339)."""
    name = daemon.launch("bb", start=False)
    volume = unique("v")
    snaps = f"/1.0/instances/{name}/snapshots"
    vsnaps = f"/1.0/storage-pools/default/volumes/custom/{volume}/snapshots"
    sent = "2030-01-02T03:04:05.123456789+02:00"
    try:
        daemon.ok(daemon.request("POST", snaps, {"name": "s1", "expires_at": sent}))
        got = daemon.request("GET", f"{snaps}/s1").metadata
        assert got["expires_at"] == sent
        assert got["created_at"].endswith("Z") and not got["created_at"].endswith("0Z")
        daemon.ok(
            daemon.request("PUT", f"{snaps}/s1", {"expires_at": "2031-01-02T03:04:05.50-05:00"})
        )
        assert (
            daemon.request("GET", f"{snaps}/s1").metadata["expires_at"]
            == "2031-01-02T03:04:05.5-05:00"
        )
        daemon.ok(daemon.request("PUT", f"{snaps}/s1", {}))
        assert (
            daemon.request("GET", f"{snaps}/s1").metadata["expires_at"]
            == "2031-01-02T03:04:05.5-05:00"
        )

        made = daemon.request("POST", "/1.0/storage-pools/default/volumes/custom", {"name": volume})
        assert made.status in (200, 201), made.body
        daemon.ok(daemon.request("POST", vsnaps, {"name": "s1", "expires_at": sent}))
        assert daemon.request("GET", f"{vsnaps}/s1").metadata["expires_at"] == sent
        assert daemon.request("PUT", f"{vsnaps}/s1", {"description": "x"}).status == 200
        assert (
            daemon.request("GET", f"{vsnaps}/s1").metadata["expires_at"] == "0001-01-01T00:00:00Z"
        )
    finally:
        daemon.force_delete(name)
        daemon.request("DELETE", f"{vsnaps}/s1")
        daemon.request("DELETE", f"/1.0/storage-pools/default/volumes/custom/{volume}")


def test_image_put_sets_expires_at(daemon: Daemon) -> None:
    """Incus's image PUT sets expires_at as sent (a zero time leaves it); its PATCH does not."""
    project = unique("pimg")
    config = {"features.images": "true"}
    made = daemon.request("POST", "/1.0/projects", {"name": project, "config": config})
    assert made.status == 201, made.body
    try:
        daemon.cli("image", "build", "busybox", "--alias", "own", "--project", project)
        target = daemon.request("GET", f"/1.0/images/aliases/own?project={project}").metadata
        url = f"/1.0/images/{target['target']}?project={project}"
        current = daemon.request("GET", url).metadata
        body = {k: current[k] for k in ("auto_update", "properties", "public", "profiles")}
        resp = daemon.request("PUT", url, {**body, "expires_at": "2035-01-02T03:04:05.5+02:00"})
        assert resp.status == 200, resp.body
        assert daemon.request("GET", url).metadata["expires_at"] == "2035-01-02T03:04:05.5+02:00"
        daemon.request("PATCH", url, {"expires_at": "2036-01-01T00:00:00Z"})
        daemon.request("PUT", url, {**body, "expires_at": "0001-01-01T00:00:00Z"})
        assert daemon.request("GET", url).metadata["expires_at"] == "2035-01-02T03:04:05.5+02:00"
        daemon.request("DELETE", url)
    finally:
        daemon.request("DELETE", f"/1.0/projects/{project}")


def test_volume_lists_filter_and_show_instance_snapshots(daemon: Daemon, busybox: str) -> None:
    """incus storage volume list POOL type=custom sends ?filter=type+eq+custom; an instance's
    snapshots list as ``c1/s1`` volumes of its type; a dir pool holds no image volumes (its
    used_by names no image), as in Incus."""
    name = daemon.launch("bb", start=False)
    volume = unique("v")
    base = "/1.0/storage-pools/default/volumes"
    try:
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s1"}))
        assert daemon.request("POST", f"{base}/custom", {"name": volume}).status == 200
        customs = daemon.request("GET", f"{base}?filter=type+eq+custom&recursion=1").metadata
        assert {v["type"] for v in customs} == {"custom"}
        assert volume in {v["name"] for v in customs}
        urls = daemon.request("GET", f"{base}?filter=type+eq+custom").metadata
        assert f"{base}/custom/{volume}" in urls and all("/custom/" in u for u in urls)
        listed = daemon.request("GET", f"{base}?filter=type+eq+container&recursion=1").metadata
        snap = next(v for v in listed if v["name"] == f"{name}/s1")
        assert snap["type"] == "container" and snap["used_by"] == []
        assert f"{base}/container/{name}/snapshots/s1" in daemon.request("GET", base).metadata
        snaps = daemon.request("GET", f"{base}/container/{name}/snapshots?recursion=1").metadata
        assert [s["name"] for s in snaps] == [f"{name}/s1"]
        gone = daemon.request("DELETE", f"{base}/container/{name}/snapshots/s1")
        assert gone.status == 400  # through the instance's snapshots
        assert not any(v["type"] == "image" for v in daemon.request(
            "GET", f"{base}?recursion=1").metadata)  # fmt: skip
        used_by = daemon.request("GET", "/1.0/storage-pools/default").metadata["used_by"]
        assert not any(u.startswith("/1.0/images/") for u in used_by)
    finally:
        daemon.force_delete(name)
        daemon.request("DELETE", f"{base}/custom/{volume}")


def test_host_interfaces_are_listed_as_unmanaged_networks(
    daemon: Daemon, network: tuple[str, str]
) -> None:
    """Incus lists the host's interfaces (veth pairs aside) beside its managed networks, shows
    them and their state, and refuses to change them."""
    name, address = network
    listed = daemon.request("GET", "/1.0/networks?recursion=1").metadata
    by_name = {n["name"]: n for n in listed}
    assert by_name["lo"] == {
        "config": {}, "description": "", "locations": None, "managed": False, "name": "lo",
        "project": "default", "status": "", "type": "loopback", "used_by": [],
    }  # fmt: skip
    assert by_name[name]["managed"] is True
    assert not any(n.startswith("veth") for n in by_name)
    assert "/1.0/networks/lo" in daemon.request("GET", "/1.0/networks").metadata
    state = daemon.request("GET", "/1.0/networks/lo/state").metadata
    assert {"address": "127.0.0.1", "family": "inet", "netmask": "8", "scope": "local"} in state[
        "addresses"
    ]
    refused = daemon.request("PATCH", "/1.0/networks/lo", {"config": {"user.a": "b"}})
    assert (
        refused.status == 400 and refused.json()["error"] == "Only managed networks can be modified"
    )
    assert daemon.request("DELETE", "/1.0/networks/lo").status == 404
    # a bridge with ipv6.address=none has no IPv6 at all (not even link-local), as in Incus
    own = daemon.request("GET", f"/1.0/networks/{name}/state").metadata["addresses"]
    assert [a["family"] for a in own] == ["inet"]
    leases = daemon.request("GET", f"/1.0/networks/{name}/leases").metadata
    assert leases == [{"address": address.split("/")[0], "hostname": f"{name}.gw", "hwaddr": "",
                       "location": "", "type": "gateway"}]  # fmt: skip


def test_nics_get_their_mac_and_name_when_added(
    daemon: Daemon, busybox: str, network: tuple[str, str]
) -> None:
    """As Incus: volatile.DEV.hwaddr (10:66:6a:...) is filled when a NIC is added, before any
    start, and a NIC without ``name`` gets the first free ethN (volatile.DEV.name)."""
    name, _ = network
    nic = {"type": "nic", "network": name}
    inst = daemon.launch("bb", start=False, devices={"first": {**nic, "name": "eth0"}})
    try:
        config = daemon.request("GET", f"/1.0/instances/{inst}").metadata["config"]
        assert config["volatile.first.hwaddr"].startswith("10:66:6a:")
        assert "volatile.first.name" not in config
        resp = daemon.request("PATCH", f"/1.0/instances/{inst}", {"devices": {"second": nic}})
        assert daemon.wait(resp).status == 200 if resp.status == 202 else resp.status == 200
        config = daemon.request("GET", f"/1.0/instances/{inst}").metadata["config"]
        assert config["volatile.second.name"] == "eth1"
        assert config["volatile.second.hwaddr"].startswith("10:66:6a:")
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{inst}/state", {"action": "start"}))
        links = daemon.cli("exec", inst, "--", "ip", "-o", "link").stdout
        assert "eth1" in links and config["volatile.second.hwaddr"] in links
    finally:
        daemon.force_delete(inst)


def test_network_allocations(daemon: Daemon, busybox: str, network: tuple[str, str]) -> None:
    """GET /1.0/network-allocations (incus network list-allocations): each network's subnets,
    its instances' addresses and its forwards' listen addresses."""
    name, address = network
    static = address.rsplit(".", 1)[0] + ".77"
    nic = {"type": "nic", "network": name, "name": "eth0", "ipv4.address": static}
    inst = daemon.launch("bb", start=False, devices={"eth0": nic})
    listen = f"192.0.2.{secrets.randbelow(200) + 20}"
    forwards = f"/1.0/networks/{name}/forwards"
    try:
        assert daemon.request("POST", forwards, {"listen_address": listen}).status == 201
        found = daemon.request("GET", "/1.0/network-allocations").metadata
        mac = daemon.request("GET", f"/1.0/instances/{inst}").metadata["config"][
            "volatile.eth0.hwaddr"
        ]
        assert {"addresses": address, "hwaddr": "", "nat": False, "type": "network",
                "used_by": f"/1.0/networks/{name}"} in found  # fmt: skip
        assert {"addresses": f"{static}/32", "hwaddr": mac, "nat": False, "type": "instance",
                "used_by": f"/1.0/instances/{inst}"} in found  # fmt: skip
        assert {"addresses": f"{listen}/32", "hwaddr": "", "nat": False,
                "type": "network-forward", "used_by": f"{forwards}/{listen}"} in found  # fmt: skip
        assert "network_allocations" in daemon.request("GET", "/1.0").metadata["api_extensions"]
    finally:
        daemon.request("DELETE", f"{forwards}/{listen}")
        daemon.force_delete(inst)


def test_rebuild_from_an_image_or_empty(daemon: Daemon, busybox: str, incus: Any) -> None:
    """incus rebuild (instances_rebuild), as Incus 6.0: stopped and without snapshots only;
    the config stays, the root volume is the image's again (or empty)."""
    name = daemon.launch("bb", config={"user.keep": "yes"})
    rootfs = daemon.root / "storage-pools/default/containers" / name / "rootfs"
    try:
        daemon.cli("exec", name, "--", "sh", "-c", "echo scribble > /root/mark")
        refused = incus("rebuild", "bb", name, check=False)
        assert (
            refused.returncode == 1 and "Instance must be stopped to be rebuilt" in refused.stderr
        )
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop",
                                                                       "force": True}))  # fmt: skip
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s"}))
        refused = incus("rebuild", "bb", name, check=False)
        assert "Cannot remove an instance volume that has snapshots" in refused.stderr
        daemon.ok(daemon.request("DELETE", f"/1.0/instances/{name}/snapshots/s"))
        incus("rebuild", "bb", name)
        assert not (rootfs / "root" / "mark").exists() and (rootfs / "bin" / "busybox").exists()
        config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        assert config["user.keep"] == "yes" and config["volatile.apply_template"] == "create"
        assert config["volatile.base_image"]
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"}))
        assert daemon.cli("exec", name, "--", "hostname").stdout.strip() == name
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop",
                                                                       "force": True}))  # fmt: skip
        incus("rebuild", "--empty", name)
        assert list(rootfs.iterdir()) == []
        config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        assert "volatile.base_image" not in config and config["user.keep"] == "yes"
        bad = daemon.request("POST", f"/1.0/instances/{name}/rebuild", {"source": {"type": "copy"}})
        assert bad.status == 400 and "copy" in bad.json()["error"]
    finally:
        daemon.force_delete(name)


def test_host_warnings_and_their_filters(daemon: Daemon) -> None:
    """As Incus, the daemon tells at start what the host lacks (here: KVM, whose absence
    makes VMs run under TCG); /1.0/warnings takes Incus's filters."""
    listed = daemon.request("GET", "/1.0/warnings?recursion=1").metadata
    kinds = {w["type"]: w for w in listed}
    if shutil.which("qemu-system-x86_64") and not Path("/dev/kvm").exists():
        assert "KVM acceleration unavailable" in kinds
    if not kinds:
        pytest.skip("this host lacks nothing stapesd warns about")
    kind, first = next(iter(kinds.items()))
    quoted = kind.replace(" ", "+").replace("'", "%27")
    found = daemon.request("GET", f"/1.0/warnings?recursion=1&filter=type+eq+%22{quoted}%22")
    assert [w["uuid"] for w in found.metadata] == [first["uuid"]], found.body
    url = f"/1.0/warnings/{first['uuid']}"
    try:
        assert daemon.request("PUT", url, {"status": "acknowledged"}).status == 200
        acked = daemon.request("GET", "/1.0/warnings?filter=status+eq+acknowledged").metadata
        assert url in acked
        assert url not in daemon.request("GET", "/1.0/warnings?filter=status+eq+new").metadata
    finally:
        daemon.request("PUT", url, {"status": "new"})


def test_iso_volumes(daemon: Daemon, busybox: str, incus: Any, tmp_path: Path) -> None:
    """custom_volume_iso: incus storage volume import POOL FILE NAME --type=iso makes an iso
    volume (its size recorded); containers cannot use it; it cannot be made empty."""
    content = tmp_path / "content"
    content.mkdir()
    (content / "a.txt").write_text("a\n")
    iso = tmp_path / "image.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(iso), str(content)], check=True)
    volume = unique("iso")
    base = "/1.0/storage-pools/default/volumes/custom"
    name = daemon.launch("bb", start=False)
    try:
        incus("storage", "volume", "import", "default", str(iso), volume, "--type=iso")
        got = daemon.request("GET", f"{base}/{volume}").metadata
        assert got["content_type"] == "iso" and got["config"] == {"size": str(iso.stat().st_size)}
        cd = {"cd": {"type": "disk", "pool": "default", "source": volume}}
        resp = daemon.request("PATCH", f"/1.0/instances/{name}", {"devices": cd})
        assert resp.status == 400
        assert "Custom ISO volumes cannot be used on containers" in resp.json()["error"]
        empty = daemon.request("POST", base, {"name": unique("e"), "content_type": "iso"})
        assert empty.status == 400
        assert "custom_volume_iso" in daemon.request("GET", "/1.0").metadata["api_extensions"]
    finally:
        daemon.force_delete(name)
        daemon.request("DELETE", f"{base}/{volume}")


def test_a_server_outside_a_cluster_answers_the_cluster_endpoints_as_incus(
    daemon: Daemon,
) -> None:
    """GET /1.0/cluster: not enabled, with the member keys of its pools a joining member would
    give (as Incus 6.0.4: "source" of a dir pool, empty); the member and group endpoints
    refuse with Incus's words, as 400s (Incus sends a 500 for some: no server error here)."""
    found = daemon.request("GET", "/1.0/cluster").json()["metadata"]
    assert (found["enabled"], found["server_name"]) == (False, "")
    assert {
        "entity": "storage-pool",
        "name": "default",
        "key": "source",
        "value": "",
        "description": '"source" property for storage pool "default"',
    } in found["member_config"]
    for method, path, status, error in (
        ("GET", "/1.0/cluster/members", 400, "Server is not clustered"),
        ("GET", "/1.0/cluster/members/m1", 400, "Server is not clustered"),
        ("POST", "/1.0/cluster/members", 400, "This server is not clustered"),
        ("GET", "/1.0/cluster/groups", 400, "This server is not clustered"),
    ):
        body = daemon.request(method, path, {"name": "m2"} if method == "POST" else None).json()
        assert (body["error_code"], body["error"]) == (status, error), path
