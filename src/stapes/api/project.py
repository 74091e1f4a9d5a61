"""Request bodies of /1.0/projects."""

from __future__ import annotations

from pydantic import Field

from stapes.api.base import WireModel


class ProjectPut(WireModel):
    config: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class ProjectsPost(ProjectPut):
    name: str


class ProjectPost(WireModel):
    """POST /1.0/projects/{name}: rename."""

    name: str
