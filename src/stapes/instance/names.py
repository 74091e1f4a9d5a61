"""Instance names: Incus's naming rules, and generated adjective-noun names."""

from __future__ import annotations

import random
import re

from stapes.api.errors import BadRequest

_ADJECTIVES = (
    "able",
    "alert",
    "amber",
    "brave",
    "bright",
    "calm",
    "clever",
    "crisp",
    "eager",
    "fair",
    "fancy",
    "fast",
    "gentle",
    "glad",
    "golden",
    "grand",
    "happy",
    "hardy",
    "humble",
    "jolly",
    "keen",
    "kind",
    "lively",
    "lucky",
    "merry",
    "mighty",
    "modest",
    "noble",
    "polite",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "ready",
    "smart",
    "solid",
    "steady",
    "sunny",
    "swift",
    "tidy",
    "upbeat",
    "vivid",
    "warm",
    "wise",
    "witty",
    "young",
    "zesty",
    "bold",
    "cosmic",
    "dapper",
)
_NOUNS = (
    "anvil",
    "badger",
    "beacon",
    "bison",
    "cobalt",
    "comet",
    "condor",
    "cougar",
    "coyote",
    "crane",
    "dingo",
    "eagle",
    "falcon",
    "ferret",
    "finch",
    "gecko",
    "gopher",
    "hawk",
    "heron",
    "ibis",
    "jackal",
    "koala",
    "lemur",
    "lynx",
    "magpie",
    "marten",
    "mole",
    "moose",
    "newt",
    "ocelot",
    "osprey",
    "otter",
    "panda",
    "pelican",
    "puffin",
    "quail",
    "raven",
    "robin",
    "salmon",
    "seal",
    "sparrow",
    "stapes",
    "stork",
    "tapir",
    "toucan",
    "walrus",
    "weasel",
    "wombat",
    "yak",
    "zebra",
)


def generate(taken: set[str]) -> str:
    for _ in range(1000):
        name = f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}"
        if name not in taken:
            return name
    raise BadRequest("Could not generate a free instance name: give one")


def validate(name: str) -> None:
    """Incus's rules for instance names (they become hostnames)."""
    prefix = "Invalid instance name: "
    if not name:
        raise BadRequest(prefix + "Name can't be empty")
    if len(name) > 63:
        raise BadRequest(prefix + "Name must be 1-63 characters long")
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise BadRequest(prefix + "Name can only contain alphanumeric and hyphen characters")
    if name[0] == "-" or name[-1] == "-":
        raise BadRequest(prefix + "Name must not start or end with a hyphen")
    if name.isdigit():
        raise BadRequest(prefix + "Name can't be a number")
