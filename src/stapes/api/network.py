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


class ForwardPort(WireModel):
    """One port specification of a network forward."""

    description: str = ""
    protocol: str = ""
    listen_port: str = ""
    target_address: str = ""
    target_port: str = ""
    snat: bool = False


class NetworkForwardPut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    ports: list[ForwardPort] = Field(default_factory=list)


class NetworkForwardsPost(NetworkForwardPut):
    listen_address: str


class AclRule(WireModel):
    """One ingress or egress rule of a network ACL."""

    action: str = ""
    state: str = "enabled"
    description: str = ""
    source: str = ""
    destination: str = ""
    protocol: str = ""
    source_port: str = ""
    destination_port: str = ""
    icmp_type: str = ""
    icmp_code: str = ""


class NetworkAclPut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    ingress: list[AclRule] = Field(default_factory=list)
    egress: list[AclRule] = Field(default_factory=list)


class NetworkAclsPost(NetworkAclPut):
    name: str


class NetworkAclPost(WireModel):
    """POST /1.0/network-acls/{name}: rename."""

    name: str


class NetworkZonePut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class NetworkZonesPost(NetworkZonePut):
    name: str = ""


class ZoneEntry(WireModel):
    """One DNS entry of a zone record (ttl 0: the default, 300 s)."""

    type: str = ""
    value: str = ""
    ttl: int = Field(default=0, ge=0, le=2**31 - 1)


class NetworkZoneRecordPut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    entries: list[ZoneEntry] = Field(default_factory=list)


class NetworkZoneRecordsPost(NetworkZoneRecordPut):
    name: str = ""
