"""The HTTP API (``/v1``): app factory, auth seam, routes. See ``docs/api.md``."""

from __future__ import annotations

from hearth.api.app import create_app
from hearth.api.auth import (
    Authenticator,
    Principal,
    RequestAuthenticator,
    may_act_as_worker,
    require_worker,
)
from hearth.api.context import ApiContext

__all__ = [
    "ApiContext",
    "Authenticator",
    "Principal",
    "RequestAuthenticator",
    "create_app",
    "may_act_as_worker",
    "require_worker",
]
