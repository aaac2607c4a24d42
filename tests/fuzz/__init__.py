"""Fuzzing and property tests: the served OpenAPI document driven by Schemathesis, and a
Hypothesis state machine driving the queue through the Store port.

Both are bounded for CI. ``make fuzz`` runs the same tests longer: it sets
``HEARTH_FUZZ_EXAMPLES``, which scales every budget here (its value is the number of
examples per API operation with credentials, and of state-machine runs per store).
Unset, each test runs the bounded default, chosen so that ``pytest tests/fuzz`` stays
around a minute on the 2-core machine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FuzzBudget:
    #: Examples per OpenAPI operation sent with the admin token.
    api_examples: int
    #: Examples per OpenAPI operation sent with no credentials (all answered 401).
    anonymous_examples: int
    #: State-machine runs per store, and the steps in each.
    machine_runs: int
    machine_steps: int
    #: True under ``make fuzz``.
    long: bool


CI_BUDGET = FuzzBudget(api_examples=40, anonymous_examples=8, machine_runs=60,
                       machine_steps=30, long=False)


def budget_from_env(value: str | None) -> FuzzBudget:
    """The CI budget, or the long one scaled by ``HEARTH_FUZZ_EXAMPLES``."""
    if not value:
        return CI_BUDGET
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"HEARTH_FUZZ_EXAMPLES={value!r} is not a whole number") from None
    if n < 1:
        raise ValueError("HEARTH_FUZZ_EXAMPLES must be at least 1")
    return FuzzBudget(api_examples=n, anonymous_examples=max(4, n // 10), machine_runs=n,
                      machine_steps=50, long=True)
