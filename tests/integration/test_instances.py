"""Instance lifecycle through the REST API: create, list, get, update, rename, state, delete."""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import Daemon, monitor_processes, unique

pytestmark = [pytest.mark.root, pytest.mark.liblxc]


def test_create_start_stop_delete(daemon: Daemon, busybox: str) -> None:
    name = unique("life")
    resp = daemon.request(
        "POST", "/1.0/instances", {"name": name, "source": {"type": "image", "alias": busybox}}
    )
    assert resp.status == 202
    assert resp.json()["metadata"]["resources"]["instances"] == [f"/1.0/instances/{name}"]
    daemon.ok(resp)
    inst = daemon.request("GET", f"/1.0/instances/{name}").metadata
    assert inst["status"] == "Stopped"
    assert inst["profiles"] == ["default"]
    assert inst["expanded_devices"]["root"]["pool"] == "default"
    assert inst["config"]["volatile.base_image"]
    assert inst["config"]["image.os"] == "busybox"

    daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"}))
    state = daemon.request("GET", f"/1.0/instances/{name}/state").metadata
    assert state["status"] == "Running" and state["pid"] > 0
    assert state["processes"] >= 1
    assert state["disk"]["root"]["usage"] > 1_000_000  # the busybox binary alone is ~2 MB
    # memory usage read 0 right after the start once in CI (cgroup v1 charges a cgroup for
    # what is allocated in it; cause not pinned down): a command run inside allocates there
    daemon.cli("exec", name, "--", "sh", "-c", "x=$(seq 1000); echo ${#x}")
    state = daemon.request("GET", f"/1.0/instances/{name}/state").metadata
    assert state["memory"]["usage"] > 0
    assert "lo" in state["network"]
    assert monitor_processes(daemon.root, name)

    resp = daemon.request("DELETE", f"/1.0/instances/{name}")
    assert resp.status == 400
    assert resp.json()["error"] == "Instance is running"

    daemon.ok(
        daemon.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop", "force": True})
    )
    assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Stopped"
    daemon.ok(daemon.request("DELETE", f"/1.0/instances/{name}"))
    assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
    assert not (daemon.root / "storage-pools/default/containers" / name).exists()
    assert not (daemon.root / "containers" / name).exists()


def test_unprivileged_by_default_and_privileged_on_request(daemon: Daemon, busybox: str) -> None:
    unpriv = daemon.launch(busybox)
    priv = daemon.launch(busybox, config={"security.privileged": "true"})
    try:

        def init_uid(name: str) -> int:
            pid = daemon.request("GET", f"/1.0/instances/{name}/state").metadata["pid"]
            return os.stat(f"/proc/{pid}").st_uid

        assert init_uid(unpriv) == 1000000
        assert init_uid(priv) == 0
        rootfs = daemon.root / "storage-pools/default/containers" / unpriv / "rootfs"
        assert (rootfs / "bin/busybox").stat().st_uid == 1000000
        conf = daemon.request("GET", f"/1.0/instances/{unpriv}").metadata["config"]
        assert conf["volatile.idmap.base"] == "1000000"
    finally:
        daemon.force_delete(unpriv)
        daemon.force_delete(priv)


def test_list_recursion_filter_and_all_projects(daemon: Daemon, container: str) -> None:
    urls = daemon.request("GET", "/1.0/instances").metadata
    assert f"/1.0/instances/{container}" in urls
    full = daemon.request("GET", "/1.0/instances?recursion=1").metadata
    assert any(i["name"] == container and i["status"] == "Running" for i in full)
    deep = daemon.request("GET", "/1.0/instances?recursion=2").metadata
    mine = next(i for i in deep if i["name"] == container)
    assert mine["state"]["pid"] > 0
    filtered = daemon.request(
        "GET", f"/1.0/instances?recursion=1&filter=name+eq+{container}+and+status+eq+Running"
    ).metadata
    assert [i["name"] for i in filtered] == [container]
    none = daemon.request("GET", f"/1.0/instances?filter=name+eq+{container}+and+status+eq+Stopped")
    assert none.metadata == []
    everywhere = daemon.request("GET", "/1.0/instances?all-projects=true").metadata
    assert f"/1.0/instances/{container}" in everywhere
    bad = daemon.request("GET", "/1.0/instances?filter=name+like+x")
    assert bad.status == 400 and "operator" in bad.json()["error"]


def test_etag_put_and_patch(daemon: Daemon, container: str) -> None:
    resp = daemon.request("GET", f"/1.0/instances/{container}")
    etag = resp.headers["ETag"].strip('"')
    inst = resp.metadata
    put = {
        k: inst[k]
        for k in (
            "architecture",
            "config",
            "devices",
            "ephemeral",
            "profiles",
            "stateful",
            "description",
        )
    }
    put["config"] = {**put["config"], "user.note": "hello"}
    wrong = daemon.request("PUT", f"/1.0/instances/{container}", put, headers={"If-Match": "bad"})
    assert wrong.status == 412
    daemon.ok(daemon.request("PUT", f"/1.0/instances/{container}", put, headers={"If-Match": etag}))
    assert (
        daemon.request("GET", f"/1.0/instances/{container}").metadata["config"]["user.note"]
        == "hello"
    )
    patched = daemon.request(
        "PATCH",
        f"/1.0/instances/{container}",
        {"config": {"user.other": "x"}, "description": "patched"},
    )
    assert patched.status == 200
    after = daemon.request("GET", f"/1.0/instances/{container}").metadata
    assert after["config"]["user.note"] == "hello" and after["config"]["user.other"] == "x"
    assert after["description"] == "patched"
    bad = daemon.request("PATCH", f"/1.0/instances/{container}", {"config": {"nope.key": "1"}})
    assert bad.status == 400 and "nope.key" in bad.json()["error"]
    volatile = daemon.request(
        "PATCH", f"/1.0/instances/{container}", {"config": {"volatile.uuid": "x"}}
    )
    assert volatile.status == 400 and "volatile.uuid" in volatile.json()["error"]


def test_live_memory_limit_reaches_the_cgroup(daemon: Daemon, container: str) -> None:
    assert (
        daemon.request(
            "PATCH", f"/1.0/instances/{container}", {"config": {"limits.memory": "64MiB"}}
        ).status
        == 200
    )
    limit = Path(f"/sys/fs/cgroup/memory/lxc.payload.{container}/memory.limit_in_bytes")
    if not limit.exists():
        pytest.skip("this host has no cgroup v1 memory controller at /sys/fs/cgroup/memory")
    assert int(limit.read_text()) == 64 * 1024 * 1024
    lifted = daemon.request(
        "PATCH", f"/1.0/instances/{container}", {"config": {"limits.memory": ""}}
    )
    assert lifted.status == 200
    assert int(limit.read_text()) > 64 * 1024 * 1024


def test_freeze_unfreeze_restart(daemon: Daemon, container: str) -> None:
    def state_of() -> str:
        return str(daemon.request("GET", f"/1.0/instances/{container}").metadata["status"])

    daemon.ok(daemon.request("PUT", f"/1.0/instances/{container}/state", {"action": "freeze"}))
    assert state_of() == "Frozen"
    resp = daemon.request("POST", f"/1.0/instances/{container}/exec", {"command": ["true"]})
    assert resp.status == 400 and resp.json()["error"] == "Instance is frozen"
    daemon.ok(daemon.request("PUT", f"/1.0/instances/{container}/state", {"action": "unfreeze"}))
    assert state_of() == "Running"
    pid = daemon.request("GET", f"/1.0/instances/{container}/state").metadata["pid"]
    daemon.ok(
        daemon.request(
            "PUT", f"/1.0/instances/{container}/state", {"action": "restart", "force": True}
        )
    )
    assert state_of() == "Running"
    assert daemon.request("GET", f"/1.0/instances/{container}/state").metadata["pid"] != pid


def test_clean_shutdown_of_busybox_init(daemon: Daemon, container: str) -> None:
    daemon.ok(
        daemon.request(
            "PUT", f"/1.0/instances/{container}/state", {"action": "stop", "timeout": 30}
        )
    )
    assert daemon.request("GET", f"/1.0/instances/{container}").metadata["status"] == "Stopped"


def test_rename(daemon: Daemon, busybox: str) -> None:
    name, new = unique("ren"), unique("ren")
    daemon.ok(
        daemon.request(
            "POST", "/1.0/instances", {"name": name, "source": {"type": "image", "alias": busybox}}
        )
    )
    try:
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}", {"name": new}))
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{new}/state", {"action": "start"}))
        assert daemon.request("GET", f"/1.0/instances/{new}").metadata["status"] == "Running"
        running = daemon.request("POST", f"/1.0/instances/{new}", {"name": name})
        assert running.status == 400
    finally:
        daemon.force_delete(new)
        daemon.force_delete(name)


def test_source_none_creates_an_empty_rootfs(daemon: Daemon) -> None:
    name = unique("empty")
    daemon.ok(daemon.request("POST", "/1.0/instances", {"name": name, "source": {"type": "none"}}))
    try:
        rootfs = daemon.root / "storage-pools/default/containers" / name / "rootfs"
        assert rootfs.is_dir() and not any(rootfs.iterdir())
    finally:
        daemon.force_delete(name)


def test_generated_name(daemon: Daemon, busybox: str) -> None:
    resp = daemon.request("POST", "/1.0/instances", {"source": {"type": "image", "alias": busybox}})
    name = resp.json()["metadata"]["resources"]["instances"][0].rsplit("/", 1)[-1]
    try:
        daemon.ok(resp)
        adjective, noun = name.split("-")
        assert adjective and noun
    finally:
        daemon.force_delete(name)


def test_dir_pool_keeps_a_spare_copy_of_the_image_volume(daemon: Daemon, busybox: str) -> None:
    images = daemon.root / "storage-pools/default/images"
    first = daemon.launch(busybox)
    try:
        fingerprint = daemon.request("GET", f"/1.0/instances/{first}").metadata["config"][
            "volatile.base_image"
        ]

        def spare() -> list[Path]:
            return list(images.glob(f"{fingerprint}.*.spare"))

        deadline = time.time() + 30
        while not spare() and time.time() < deadline:
            time.sleep(0.1)
        assert spare(), f"no spare copy after a launch: {daemon.log.read_text()[-3000:]}"
        second = daemon.launch(busybox)
        try:
            out = daemon.cli("exec", second, "--", "cat", "/etc/hostname").stdout
            assert out.strip() == second
            rootfs = daemon.root / "storage-pools/default/containers" / second / "rootfs"
            assert (rootfs / "bin/busybox").stat().st_uid == 1000000
        finally:
            daemon.force_delete(second)
    finally:
        daemon.force_delete(first)


def test_start_templates_stay_inside_the_instance(daemon: Daemon, busybox: str) -> None:
    """Templates with ``when: start`` are written at every start; a link in their way is not
    followed out of the instance."""
    name = daemon.launch(busybox)
    marker = f"/tmp/stapes-template-{name}"
    try:
        volume = daemon.root / "storage-pools/default/containers" / name
        meta = yaml.safe_load((volume / "metadata.yaml").read_text())
        for target in ("/etc/hostname", "/etc/hosts"):
            meta["templates"][target]["when"] = ["create", "copy", "start"]
        (volume / "metadata.yaml").write_text(yaml.safe_dump(meta))
        script = f"echo changed > /etc/hostname && rm /etc/hosts && ln -s {marker} /etc/hosts"
        daemon.cli("exec", name, "--", "sh", "-c", script)
        daemon.ok(
            daemon.request(
                "PUT", f"/1.0/instances/{name}/state", {"action": "restart", "force": True}
            )
        )
        assert daemon.cli("exec", name, "--", "cat", "/etc/hostname").stdout.strip() == name
        assert not Path(marker).exists()
    finally:
        daemon.force_delete(name)
        Path(marker).unlink(missing_ok=True)


def test_image_templates_render_as_incus_images_use_them(daemon: Daemon, busybox: str) -> None:
    """The pongo2 subset of Incus's images (config_get, if/else, properties, filters),
    applied at the start after volatile.apply_template marks them (create at the first start,
    as Incus), create_only files left when present."""
    name = daemon.launch(busybox, config={"user.greeting": "hello"})
    try:
        config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        assert "volatile.apply_template" not in config  # applied at the first start
        volume = daemon.root / "storage-pools/default/containers" / name
        templates = volume / "templates"
        (templates / "greeting.tpl").write_text(
            '{{ config_get("user.greeting", properties.fallback) }} from {{ instance.name }}\n'
            '{% if config_get("user.missing", "") == "" %}no missing{% else %}missing{% endif %}\n'
            '{{ trigger }} {{ path }} {{ container.name|upper }} {{ nothing|default:"none" }}\n'
        )
        (templates / "once.tpl").write_text("first\n")
        meta = yaml.safe_load((volume / "metadata.yaml").read_text())
        meta["templates"]["/etc/greeting"] = {
            "when": ["create"], "template": "greeting.tpl", "properties": {"fallback": "hi"},
        }  # fmt: skip
        meta["templates"]["/etc/once"] = {
            "when": ["create"], "template": "once.tpl", "create_only": True,
        }  # fmt: skip
        (volume / "metadata.yaml").write_text(yaml.safe_dump(meta))
        daemon.cli("exec", name, "--", "sh", "-c", "echo mine > /etc/once")
        resp = daemon.request(
            "PATCH", f"/1.0/instances/{name}", {"config": {"volatile.apply_template": "create"}}
        )
        assert resp.status == 200, resp.body
        restart = {"action": "restart", "force": True}
        daemon.ok(daemon.request("PUT", f"/1.0/instances/{name}/state", restart))
        greeting = daemon.cli("exec", name, "--", "cat", "/etc/greeting").stdout
        assert greeting == (
            f"hello from {name}\nno missing\ncreate /etc/greeting {name.upper()} none\n"
        )
        assert daemon.cli("exec", name, "--", "cat", "/etc/once").stdout == "mine\n"
        config = daemon.request("GET", f"/1.0/instances/{name}").metadata["config"]
        assert "volatile.apply_template" not in config
    finally:
        daemon.force_delete(name)


def test_lists_see_changes_made_behind_the_daemon(daemon: Daemon, busybox: str) -> None:
    """Lists answer running containers from the daemon's own watch of their init (no liblxc
    call each), yet a freeze or a kill the daemon did not make shows at once."""
    name = daemon.launch(busybox)
    try:

        def listed() -> str:
            rows = daemon.request("GET", "/1.0/instances?recursion=1").metadata
            return next(r["status"] for r in rows if r["name"] == name)

        pid = daemon.request("GET", f"/1.0/instances/{name}/state").metadata["pid"]
        assert listed() == "Running"
        cgroup = next(
            line.split(":", 2)[2]
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            if "freezer" in line.split(":")[1].split(",")
        )
        state = Path("/sys/fs/cgroup/freezer") / cgroup.lstrip("/") / "freezer.state"
        state.write_text("FROZEN")
        deadline = time.monotonic() + 10
        while (seen := listed()) != "Frozen":  # the kernel passes through FREEZING
            assert seen in ("Running", "Freezing") and time.monotonic() < deadline, seen
            time.sleep(0.05)
        state.write_text("THAWED")
        assert listed() == "Running"
        pidfd = os.pidfd_open(pid)
        os.kill(pid, signal.SIGKILL)
        select.select([pidfd], [], [], 10)  # the kernel says init has exited
        os.close(pidfd)
        assert listed() in ("Stopped", "Stopping", "Error")  # never Running once init is gone
        deadline = time.monotonic() + 10
        while listed() != "Stopped":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        daemon.force_delete(name)
