"""A VM's config drive, made at each start: an ISO 9660 volume labelled ``cidata`` (so
cloud-init's NoCloud source reads its meta-data, user-data, vendor-data and network-config)
that also carries the guest agent (stapes-agent/guest.py and protocol.py), which the images'
boot scripts run from it. The agent is always the daemon's own version."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path

from stapes import agent
from stapes.api.errors import MissingHostFeature
from stapes.host.run import run
from stapes.instance import cloudinit
from stapes.instance.devices.device import VmDisk
from stapes.instance.vm.qemu_args import share_tag

AGENT_FILES = ("guest.py", "protocol.py")


async def build(
    target: Path,
    name: str,
    config: dict[str, str],
    shares: list[VmDisk] | None = None,
    virtiofs: Collection[str] = (),
    nics: list[dict[str, str | int]] | None = None,
) -> Path:
    """``shares``: the directories the agent mounts, over virtiofs for the names in
    ``virtiofs``, else over 9p. ``nics``: the names and MTUs the agent gives the guest's
    NICs, found by MAC address (agent.nic_config)."""
    if shutil.which("genisoimage") is None:
        raise MissingHostFeature(
            "genisoimage is missing (VM config drives are ISO images): install Debian's "
            "genisoimage package"
        )
    source = Path(agent.__file__).parent
    with tempfile.TemporaryDirectory(prefix="config-", dir=target.parent) as tmp:
        tree = Path(tmp)
        (tree / "stapes-agent").mkdir()
        for file in AGENT_FILES:
            shutil.copyfile(source / file, tree / "stapes-agent" / file)
        for file, content in cloudinit.seed(name, config).items():
            (tree / file).write_text(content)
        mounts = [
            {
                "tag": share_tag(d),
                "path": d.path,
                "readonly": d.readonly,
                "type": "virtiofs" if d.name in virtiofs else "9p",
            }
            for d in shares or []
        ]
        (tree / "stapes-agent" / "mounts.json").write_text(json.dumps(mounts))
        (tree / "stapes-agent" / "nics.json").write_text(json.dumps(nics or []))
        await run(
            ["genisoimage", "-quiet", "-o", str(target), "-V", "cidata", "-R", "-J", str(tree)],
            timeout=120,
        )
    target.chmod(0o600)
    return target
