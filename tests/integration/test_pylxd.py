"""pylxd 2.4, the Python client of the LXD/Incus API, drives stapesd over its unix socket."""

from __future__ import annotations

import pytest

from tests.helpers import Daemon, unique

pylxd = pytest.importorskip("pylxd", reason="pylxd is not installed (make test installs it)")

pytestmark = [
    pytest.mark.root,
    pytest.mark.liblxc,
    pytest.mark.pylxd,
    # pylxd's Snapshot model warns about every field it does not know (real Incus sends the
    # same fields): those warnings are pylxd's, not failures.
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def test_pylxd_create_exec_files_snapshots_delete(daemon: Daemon, busybox: str) -> None:
    client = pylxd.Client(endpoint=daemon.socket)
    assert client.host_info["api_version"] == "1.0"
    name = unique("py")
    inst = client.instances.create(
        {"name": name, "source": {"type": "image", "alias": busybox}}, wait=True
    )
    try:
        assert inst.status == "Stopped"
        inst.start(wait=True)
        assert client.instances.get(name).status == "Running"

        result = inst.execute(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert inst.execute(["cat"], stdin_payload="piped in").stdout == "piped in"

        inst.files.put("/root/hello", b"first")
        assert inst.files.get("/root/hello") == b"first"
        inst.snapshots.create("s1", wait=True)
        assert [s.name for s in inst.snapshots.all()] == ["s1"]
        inst.files.put("/root/hello", b"second")
        inst.restore_snapshot("s1", wait=True)
        assert inst.files.get("/root/hello") == b"first"
        inst.snapshots.get("s1").rename("s2", wait=True)
        assert [s.name for s in inst.snapshots.all()] == ["s2"]
        inst.snapshots.get("s2").delete(wait=True)
        assert inst.snapshots.all() == []

        inst.stop(wait=True, force=True)
        inst.delete(wait=True)
        assert not client.instances.exists(name)
    finally:
        daemon.force_delete(name)


def test_pylxd_errors(daemon: Daemon) -> None:
    client = pylxd.Client(endpoint=daemon.socket)
    with pytest.raises(pylxd.exceptions.NotFound):
        client.instances.get("no-such-instance")
    with pytest.raises(pylxd.exceptions.LXDAPIException, match=r"not found|Image"):
        client.instances.create(
            {"name": unique("py"), "source": {"type": "image", "alias": "no-such-alias"}},
            wait=True,
        )
