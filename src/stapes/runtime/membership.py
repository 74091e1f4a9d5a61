"""Which cluster member this daemon is (nothing, on a server that is not clustered): the name
every instance created here is located at and events are sent from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Membership:
    name: str = ""
    """The member's name; empty when the server is not clustered."""
    address: str = ""
    """Its cluster address (HOST:PORT of the HTTPS listener the other members reach)."""

    @property
    def clustered(self) -> bool:
        return bool(self.name)

    @property
    def location(self) -> str:
        """As the API shows where a thing lives: the member, or "none"."""
        return self.name or "none"


def shown_location(location: str) -> str:
    """A stored location as the API shows it ("none" for a server that is not clustered)."""
    return location or "none"
