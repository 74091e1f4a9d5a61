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


class ImageSource(WireModel):
    """POST /1.0/images with a JSON body: an image to pull from a server (type image), or an
    instance or snapshot to publish (``name``: ``c1`` or ``c1/snap0``)."""

    type: str = "image"
    name: str = ""
    mode: str = "pull"
    server: str = ""
    protocol: str = ""
    alias: str = ""
    fingerprint: str = ""
    certificate: str = ""
    secret: str = ""


class ImageAliasEntry(WireModel):
    name: str
    description: str = ""


class ImagesPost(WireModel):
    source: ImageSource = Field(default_factory=ImageSource)
    aliases: list[ImageAliasEntry] = Field(default_factory=list)
    public: bool = False
    auto_update: bool = False
    compression_algorithm: str = ""
    properties: dict[str, str] = Field(default_factory=dict)


class ImageMetadataTemplate(WireModel):
    """One entry of metadata.yaml's templates: which file renders to the key's path, when."""

    when: list[str] = Field(default_factory=list)
    create_only: bool = False
    template: str = ""
    properties: dict[str, str] = Field(default_factory=dict)


class ImageMetadata(WireModel):
    """An image's (or an instance's) metadata.yaml, as GET/PUT .../metadata carry it."""

    architecture: str = ""
    creation_date: int = 0
    expiry_date: int = 0
    properties: dict[str, str] = Field(default_factory=dict)
    templates: dict[str, ImageMetadataTemplate] | None = None
