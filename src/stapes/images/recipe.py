"""Image recipes: YAML files naming a distribution and release, the packages to install, files
to write and commands to run, with named variants adding to them (in the spirit of
distrobuilder). The built-in ones live in ``images/recipes/``; users copy and change them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from stapes.api.errors import BadRequest


@dataclass
class RecipeFile:
    path: str
    content: str
    mode: int = 0o644


@dataclass
class Recipe:
    distribution: str
    release: str
    variant: str
    description: str
    packages: list[str] = field(default_factory=list)
    files: list[RecipeFile] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def bootstrap_key(self, arch: str) -> str:
        """What the cached bootstrap of this recipe depends on."""
        text = json.dumps([self.distribution, self.release, arch, sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _files(entries: Any, where: str) -> list[RecipeFile]:
    found = []
    for entry in entries or []:
        if not isinstance(entry, dict) or not str(entry.get("path", "")).startswith("/"):
            raise BadRequest(f"{where}: every file needs an absolute path and a content")
        mode = entry.get("mode", 0o644)
        found.append(
            RecipeFile(
                str(entry["path"]),
                str(entry.get("content", "")),
                int(mode, 8) if isinstance(mode, str) else int(mode),
            )
        )
    return found


def _strings(value: Any, where: str, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{where}: {what} must be a list of strings")
    return list(value)


def parse(text: str, where: str, variant: str = "", release: str = "") -> Recipe:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadRequest(f"{where} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"{where}: a recipe is a mapping")
    if data.get("distribution") != "debian":
        raise BadRequest(f"{where}: distribution must be debian (the only one built here)")
    variants = data.get("variants") or {"default": {}}
    chosen = variant or "default"
    if chosen not in variants:
        raise BadRequest(
            f"{where}: no variant {chosen!r} (there are: {', '.join(sorted(variants))})"
        )
    extra = variants[chosen] or {}
    release = release or str(data.get("release", ""))
    description = str(data.get("description", "{distribution} {release}"))
    return Recipe(
        distribution="debian",
        release=release,
        variant=chosen,
        description=description.format(release=release, variant=chosen, distribution="Debian"),
        packages=_strings(data.get("packages"), where, "packages")
        + _strings(extra.get("packages"), where, "packages"),
        files=_files(data.get("files"), where) + _files(extra.get("files"), where),
        commands=_strings(data.get("commands"), where, "commands")
        + _strings(extra.get("commands"), where, "commands"),
    )


def builtin(name: str, variant: str = "", release: str = "") -> Recipe:
    text = resources.files("stapes.images.recipes").joinpath(f"{name}.yaml").read_text()
    return parse(text, f"the built-in {name} recipe", variant, release)


def load(path: Path, variant: str = "") -> Recipe:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadRequest(f"Cannot read the recipe {path}: {exc.strerror}") from None
    return parse(text, str(path), variant)
