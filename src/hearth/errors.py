"""Every error Hearth raises on purpose, in one module shared by all layers.

Store adapters translate driver errors into these at their boundary; the HTTP layer
maps each class to one status code (``status``). Nothing above the store ever sees a
``sqlite3`` or ``psycopg`` exception. Messages are whole sentences that say what went
wrong and, where there is one, what to do about it: they are shown to users as is.
"""

from __future__ import annotations


class HearthError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(HearthError):
    """Input that does not fit the model: a bad kind, digest, option or payload."""

    status = 422
    code = "invalid"


class PayloadTooLarge(HearthError):
    """A payload or request body over the configured limit."""

    status = 413
    code = "too_large"


class NotFound(HearthError):
    """A job, blob, node or other object that does not exist."""

    status = 404
    code = "not_found"


class Conflict(HearthError):
    """The request is well formed but the object's current state forbids it."""

    status = 409
    code = "conflict"


class InvalidTransition(Conflict):
    """A state-machine move that is not allowed from the current state."""

    code = "invalid_transition"


class StaleLease(Conflict):
    """A heartbeat or outcome sent with a fencing token that no longer holds the lease."""

    code = "stale_lease"


class Unauthorized(HearthError):
    """No credentials, or credentials that are not valid."""

    status = 401
    code = "unauthorized"


class Forbidden(HearthError):
    """Valid credentials that are not allowed to do this."""

    status = 403
    code = "forbidden"


class Unavailable(HearthError):
    """The store or another dependency cannot be reached right now; try again."""

    status = 503
    code = "unavailable"


__all__ = [
    "Conflict",
    "Forbidden",
    "HearthError",
    "InvalidTransition",
    "NotFound",
    "PayloadTooLarge",
    "StaleLease",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
]
