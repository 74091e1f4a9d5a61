"""What macvlan and physical networks share: they make nothing on the host, they name an
existing host interface (``parent``) that their NICs use, and report that interface's state."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.network.drivers.driver import NetworkDriver, link_state


def _no_vlan(value: str) -> None:
    raise ValueError("VLANs need 802.1q support, which this kernel lacks")


class ParentDriver(NetworkDriver):
    KEYS: ClassVar[dict[str, v.Validator]] = {
        "parent": v.is_ifname,
        "mtu": v.is_uint,
        "vlan": _no_vlan,
        "gvrp": v.is_bool,
    }

    @classmethod
    def probe(cls) -> None:
        return None

    @classmethod
    def validate_name(cls, name: str) -> None:
        try:
            v.is_ifname(name)
        except ValueError as exc:
            raise BadRequest(f"Invalid network name: {exc}") from None

    def defaults(self, config: dict[str, str]) -> dict[str, str]:
        if not config.get("parent"):
            raise BadRequest(f"A {self.TYPE} network needs parent (the host interface)")
        return {}

    @property
    def host_interface(self) -> str:
        return self.config.get("parent", "")

    async def start(self) -> None:
        parent = self.host_interface
        if not Path(f"/sys/class/net/{parent}").exists():
            raise BadRequest(f"The parent interface {parent!r} does not exist on this host")
        if self.config.get("mtu"):
            Path(f"/sys/class/net/{parent}/mtu").write_text(self.config["mtu"])

    async def delete(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def state(self) -> dict[str, Any]:
        """(Blocking: netlink reads. Called in a thread.)"""
        return link_state(self.host_interface)
