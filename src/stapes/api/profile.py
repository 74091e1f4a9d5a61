"""Profile wire types."""

from __future__ import annotations

from pydantic import Field, field_validator

from stapes.api.base import WireModel, without_empty_keys
from stapes.api.instance import Devices


class ProfilePut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    devices: Devices = Field(default_factory=dict)

    @field_validator("devices", mode="before")
    @classmethod
    def _unset_empty(cls, value: object) -> object:
        return without_empty_keys(value)


class ProfilesPost(ProfilePut):
    name: str


class ProfilePost(WireModel):
    name: str
