"""Profile wire types."""

from __future__ import annotations

from pydantic import Field

from stapes.api.base import WireModel
from stapes.api.instance import Devices


class ProfilePut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    devices: Devices = Field(default_factory=dict)


class ProfilesPost(ProfilePut):
    name: str


class ProfilePost(WireModel):
    name: str
