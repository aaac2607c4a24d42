"""Fixtures of the fuzz tests: the budget (see :mod:`fuzz`).

The Hypothesis example database is off in every fuzz test (``database=None``): no
``.hypothesis/`` directory appears in the work tree, and a failure prints the shrunk
steps and a ``@reproduce_failure`` blob instead.
"""

from __future__ import annotations

import os

import pytest

from . import FuzzBudget, budget_from_env


@pytest.fixture(scope="session")
def fuzz_budget() -> FuzzBudget:
    try:
        return budget_from_env(os.environ.get("HEARTH_FUZZ_EXAMPLES"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
