"""Image secrets: a trusted client asks for one to let another daemon (which it does not
trust) download a private image, as Incus's image copy between servers does. A secret is an
operation of class ``token`` holding it; one export with it ends the operation."""

from __future__ import annotations

import asyncio
import secrets

from stapes.db.images import ImageRow
from stapes.runtime.operations import Operation, Operations


class ImageSecrets:
    def __init__(self) -> None:
        self._pending: dict[str, tuple[str, Operation]] = {}
        """secret -> (fingerprint, its operation)."""

    def new(self, row: ImageRow, operations: Operations) -> Operation:
        secret = secrets.token_hex(32)

        async def pending(op: Operation) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                self._pending.pop(secret, None)

        op = operations.start(
            pending,
            description="Downloading image",
            resources={"images": [f"/1.0/images/{row.fingerprint}"]},
            project=row.project,
            cls="token",
            metadata={"secret": secret, "fingerprint": row.fingerprint},
            may_cancel=True,
        )
        self._pending[secret] = (row.fingerprint, op)
        return op

    def allows(self, row: ImageRow, secret: str) -> bool:
        found = self._pending.get(secret) if secret else None
        return found is not None and secrets.compare_digest(found[0], row.fingerprint)

    def use(self, secret: str) -> None:
        """The export started: the secret is spent."""
        found = self._pending.pop(secret, None) if secret else None
        if found is not None and not found[1].finished:
            found[1].cancel()
