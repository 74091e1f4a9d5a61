"""Image recipes: the built-in Debian one and its variants, a user's recipe, bad recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stapes.api.errors import BadRequest
from stapes.images import recipe


def test_builtin_debian_and_its_cloud_variant() -> None:
    default = recipe.builtin("debian", release="13")
    assert default.variant == "default" and default.release == "13"
    assert default.description == "Debian 13 (default)"
    assert "systemd-sysv" in default.packages and "cloud-init" not in default.packages
    cloud = recipe.builtin("debian", "cloud", "12")
    assert "cloud-init" in cloud.packages
    assert [f.path for f in cloud.files][-1] == "/etc/cloud/cloud.cfg.d/90-stapes.cfg"
    assert cloud.bootstrap_key("x86_64") != default.bootstrap_key("x86_64")
    assert recipe.builtin("debian", release="12").bootstrap_key("x86_64") == recipe.builtin(
        "debian", release="12"
    ).bootstrap_key("x86_64")


def test_a_users_recipe_and_bad_ones(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "distribution: debian\nrelease: '12'\npackages: [vim-tiny]\n"
        "files:\n  - {path: /etc/motd, content: hi, mode: '0600'}\ncommands: ['true']\n"
    )
    got = recipe.load(mine)
    assert got.packages == ["vim-tiny"] and got.files[0].mode == 0o600
    for text, expected in [
        ("- a list", "a recipe is a mapping"),
        ("distribution: fedora", "distribution must be debian"),
        ("distribution: debian\npackages: vim", "packages must be a list"),
        ("distribution: debian\nfiles: [{content: x}]", "absolute path"),
        ("distribution: debian\n: [", "not valid YAML"),
    ]:
        mine.write_text(text)
        with pytest.raises(BadRequest, match=expected):
            recipe.load(mine)
    with pytest.raises(BadRequest, match="no variant 'gui'"):
        recipe.builtin("debian", "gui")
    with pytest.raises(BadRequest, match="Cannot read"):
        recipe.load(tmp_path / "missing.yaml")
