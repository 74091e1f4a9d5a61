"""Image wire types."""

from __future__ import annotations

from pydantic import Field

from stapes.api.base import WireModel


class ImagePut(WireModel):
    auto_update: bool = False
    properties: dict[str, str] = Field(default_factory=dict)
    public: bool = False
    expires_at: str = ""
    profiles: list[str] | None = None


class ImageAliasesPost(WireModel):
    name: str
    description: str = ""
    target: str
    type: str = ""


class ImageAliasPut(WireModel):
    description: str = ""
    target: str


class ImageAliasPost(WireModel):
    name: str
