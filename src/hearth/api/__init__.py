"""The HTTP API (``/v1``): app factory, auth seam, routes. See ``docs/api.md``."""

from __future__ import annotations

from hearth.api.app import create_app
from hearth.api.auth import (
    Authenticator,
    BearerTokenAuthenticator,
    Principal,
    may_act_as_worker,
    require_worker,
)
from hearth.api.context import ApiContext

__all__ = [
    "ApiContext",
    "Authenticator",
    "BearerTokenAuthenticator",
    "Principal",
    "create_app",
    "may_act_as_worker",
    "require_worker",
]
