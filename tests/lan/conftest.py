"""Tests on a real LAN of network namespaces (:mod:`lan.netns`).

Every test here is marked ``slow`` and needs network namespaces: without them (not
Linux, not root, no iproute2) it is skipped with the reason, except under ``CI=true``,
where it fails: CI must never go green by skipping the network. Leftovers of crashed
earlier runs are deleted once per session, before the first test here.

Use the ``lan`` fixture: ``net = lan("coord", "w1")`` gives an entered
:class:`~lan.netns.Lan`, destroyed after the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from lan.netns import Lan, available, cleanup_stale

_HERE = Path(__file__).parent


def require_netns() -> None:
    """Skip the calling test if network namespaces cannot be used (fail under CI)."""
    reason = available()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: the LAN tests must run)")
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def _stale_cleaned() -> None:
    cleanup_stale()


@pytest.fixture(autouse=True)
def _netns_required(request: pytest.FixtureRequest) -> None:
    require_netns()
    request.getfixturevalue("_stale_cleaned")


@pytest.fixture
def lan() -> Iterator[Callable[..., Lan]]:
    """A factory: ``lan("a", "b", ...)`` returns an entered :class:`Lan` of those
    hosts (``("a", "b")`` without arguments), destroyed at the end of the test."""
    with ExitStack() as stack:

        def make(*hosts: str) -> Lan:
            return stack.enter_context(Lan(hosts or ("a", "b")))

        yield make
