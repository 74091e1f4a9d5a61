"""Request bodies of /1.0/networks."""

from __future__ import annotations

from pydantic import Field

from stapes.api.base import WireModel


class NetworkPut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class NetworksPost(NetworkPut):
    name: str
    type: str = "bridge"


class NetworkPost(WireModel):
    """POST /1.0/networks/{name}: rename."""

    name: str
