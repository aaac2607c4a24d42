"""The auth seam: bearer-token checking and the one worker-identity rule."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from hearth.api.auth import (
    Principal,
    RequestAuthenticator,
    may_act_as_worker,
    require_worker,
)
from hearth.errors import Forbidden, Unauthorized

TOKEN = "hth_secret-token"


def request(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/v1/jobs", "headers": headers})


def test_the_admin_token_authenticates_as_admin() -> None:
    auth = RequestAuthenticator(TOKEN)
    assert auth.authenticate(request(f"Bearer {TOKEN}")) == Principal("admin", "admin")
    assert auth.authenticate(request(f"bearer {TOKEN}")).role == "admin"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}",
                                    "Bearer wrong", f"Bearer {TOKEN}x", TOKEN])
def test_anything_else_is_unauthorized_without_echoing_it(header: str | None) -> None:
    with pytest.raises(Unauthorized) as info:
        RequestAuthenticator(TOKEN).authenticate(request(header))
    assert TOKEN not in info.value.message
    assert "wrong" not in info.value.message


def test_an_empty_admin_token_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        RequestAuthenticator("")


@pytest.mark.parametrize(("principal", "worker", "allowed"), [
    (Principal("admin", "admin"), "any-worker", True),
    (Principal("w1", "worker"), "w1", True),
    (Principal("w1", "worker"), "w2", False),
    (Principal("w1", "viewer"), "w1", False),
])
def test_who_may_act_as_a_worker(principal: Principal, worker: str, allowed: bool) -> None:
    assert may_act_as_worker(principal, worker) is allowed
    if allowed:
        require_worker(principal, worker)
    else:
        with pytest.raises(Forbidden, match=worker):
            require_worker(principal, worker)
