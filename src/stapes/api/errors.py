"""The error tree. Each class carries its HTTP status; server/response.py maps them in one place."""

from __future__ import annotations


class StapesError(Exception):
    """Base of every error Stapes reports to a client. ``status`` is the HTTP status."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(StapesError):
    status = 400


class Unauthorized(StapesError):
    """Authentication is needed (an OIDC token missing, expired or refused); ``headers`` tell
    the client how to get one, as Incus's X-Incus-OIDC-* headers do."""

    status = 401

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = dict(headers or {})


class Forbidden(StapesError):
    status = 403


class NotFound(StapesError):
    status = 404


class Conflict(StapesError):
    status = 409


class PreconditionFailed(StapesError):
    status = 412


class MissingHostFeature(BadRequest):
    """The host lacks a kernel feature, module or binary; the message names it."""


class PayloadTooLarge(StapesError):
    status = 413


class InternalError(StapesError):
    status = 500


class RemoteError(StapesError):
    """An error answered by a remote daemon (client side); keeps the remote's status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
