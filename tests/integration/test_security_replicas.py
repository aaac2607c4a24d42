"""Two coordinator replicas on one PostgreSQL share tokens and revocations: a change
made through one is enforced by the other within its refresh interval (5 s)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from hearth.client import Client
from hearth.coordinator import Settings, serve_in_thread
from hearth.errors import Unauthorized
from hearth.security.service import REFRESH
from helpers import eventually

pytestmark = pytest.mark.postgres


def test_a_token_made_on_one_replica_works_and_is_revoked_on_the_other(
        tmp_path: Path, pg_url: str) -> None:
    one = Settings(data_dir=tmp_path / "one", port=0, store_url=pg_url)
    two = Settings(data_dir=tmp_path / "two", port=0, store_url=pg_url)
    with contextlib.ExitStack() as stack:
        url_one = stack.enter_context(serve_in_thread(one))
        url_two = stack.enter_context(serve_in_thread(two))
        admin_one = stack.enter_context(Client(url_one, data=one.data_dir))
        created = admin_one.create_token("shared", role="viewer")
        user_two = stack.enter_context(Client(url_two, token=created.token))

        def accepted() -> bool:
            try:
                return user_two.whoami().name == "shared"
            except Unauthorized:
                return False

        eventually(accepted, timeout=REFRESH + 5, what="the other replica accepting it")
        admin_one.revoke_token("shared")

        def refused() -> bool:
            try:
                user_two.whoami()
            except Unauthorized as exc:
                return "revoked" in exc.message
            return False

        eventually(refused, timeout=REFRESH + 5, what="the other replica refusing it")
