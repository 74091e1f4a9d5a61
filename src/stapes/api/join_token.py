"""A cluster join token as text (what `incus cluster add` prints and `incus admin init` or
`stapes cluster join` take): Incus's ClusterMemberJoinToken fields as JSON, in base64. The
operation that holds a token has them under other names (serverName, expiresAt)."""

from __future__ import annotations

import base64
import json
from typing import Any

from stapes.api.times import ZERO_TIME


def token_text(operation_metadata: dict[str, Any]) -> str:
    token = {
        "server_name": operation_metadata.get("serverName", ""),
        "fingerprint": operation_metadata.get("fingerprint", ""),
        "addresses": operation_metadata.get("addresses", []),
        "secret": operation_metadata.get("secret", ""),
        "expires_at": operation_metadata.get("expiresAt", ZERO_TIME),
    }
    return base64.b64encode(json.dumps(token).encode()).decode()


def decode(text: str) -> dict[str, Any] | None:
    """The token's fields; None when ``text`` is not a token."""
    try:
        token = json.loads(base64.b64decode(text.strip(), validate=True))
    except ValueError:
        return None
    return token if isinstance(token, dict) else None


def secret_of(text: str) -> str:
    """The secret of a join token given whole, or the secret itself (as Incus takes both)."""
    token = decode(text)
    secret = token.get("secret") if token is not None else None
    return secret if isinstance(secret, str) else text
