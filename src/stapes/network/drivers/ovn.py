"""ovn: refused on hosts that cannot run OVN. OVN's chassis needs Open vSwitch's kernel datapath
(the openvswitch module) and the OVN daemons; the probe names what is missing, so creating an
ovn network fails with that message and nothing is recorded. Stapes has no OVN northbound
client yet: on a host that has both, the probe says so instead."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from stapes.api.errors import MissingHostFeature
from stapes.network.drivers.driver import NetworkDriver


def _kernel_has_openvswitch() -> bool:
    if Path("/sys/module/openvswitch").exists():
        return True
    release = Path("/proc/sys/kernel/osrelease").read_text().strip()
    return any(Path(f"/lib/modules/{release}").rglob("openvswitch.ko*"))


class OvnDriver(NetworkDriver):
    TYPE = "ovn"

    @classmethod
    def probe(cls) -> None:
        missing = []
        if not _kernel_has_openvswitch():
            missing.append(
                "Open vSwitch's kernel datapath (the openvswitch module, CONFIG_OPENVSWITCH)"
            )
        if shutil.which("ovn-nbctl") is None:
            missing.append("the OVN tools and daemons (apt-get install ovn-central ovn-host)")
        if missing:
            raise MissingHostFeature("OVN networks need " + " and ".join(missing))
        raise MissingHostFeature(
            "OVN networks are not supported by this stapesd yet: use bridge, macvlan or physical"
        )

    @classmethod
    def validate_name(cls, name: str) -> None:
        return None

    async def start(self) -> None:
        self.probe()

    async def delete(self) -> None:
        return None

    def state(self) -> dict[str, Any]:
        return {"state": "down", "addresses": [], "counters": {}, "type": "broadcast"}
