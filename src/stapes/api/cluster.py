"""Request bodies of /1.0/cluster and below."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from stapes.api.base import WireModel


class ClusterPut(WireModel):
    server_name: str = ""
    enabled: bool = False
    member_config: list[dict[str, Any]] = Field(default_factory=list)
    cluster_address: str = ""
    cluster_certificate: str = ""
    server_address: str = ""
    cluster_token: str = ""


class ClusterMemberPut(WireModel):
    description: str = ""
    config: dict[str, str] = Field(default_factory=dict)
    failure_domain: str = ""
    groups: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)


class ClusterMembersPost(WireModel):
    """POST /1.0/cluster/members: a join token for a new member."""

    server_name: str


class ClusterMemberPost(WireModel):
    """POST /1.0/cluster/members/{name}: rename."""

    server_name: str


class ClusterGroupPut(WireModel):
    description: str = ""
    members: list[str] = Field(default_factory=list)
    config: dict[str, str] = Field(default_factory=dict)


class ClusterGroupsPost(ClusterGroupPut):
    name: str


class ClusterGroupPost(WireModel):
    """POST /1.0/cluster/groups/{name}: rename."""

    name: str
