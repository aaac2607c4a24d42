"""Backoff math and the one "retry or give up, and when" decision (``hearth.domain.retry``).

Pure: ``rand`` in [0, 1) and ``now`` are passed in, so every case is exact.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest

from hearth.domain.retry import Backoff, GiveUp, RetryAt, decide, delay
from hearth.errors import ValidationError

NOW = 1_000.0
#: Largest float below 1: the top of ``rand``'s half-open range.
ALMOST_ONE = math.nextafter(1.0, 0.0)
NO_JITTER = Backoff(initial=1.0, max=300.0, multiplier=2.0, jitter=0.0)
BACKOFFS = [
    pytest.param(Backoff(), id="default"),
    pytest.param(Backoff(initial=0.5, max=10.0, multiplier=3.0, jitter=0.5), id="wide-jitter"),
    pytest.param(Backoff(initial=2.0, max=2.0, multiplier=2.0, jitter=1.0), id="flat-full-jitter"),
    pytest.param(Backoff(initial=1.0, max=1e6, multiplier=1.0, jitter=0.2), id="constant"),
    pytest.param(Backoff(initial=0.01, max=5.0, multiplier=10.0, jitter=1.0), id="steep"),
]
RANDS = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, ALMOST_ONE]


def base(backoff: Backoff, failures: int) -> float:
    """The un-jittered delay, computed independently of the code under test."""
    return min(backoff.initial * backoff.multiplier ** (failures - 1), backoff.max)


@pytest.mark.parametrize(
    ("backoff", "failures", "expected"),
    [
        (NO_JITTER, 1, 1.0),
        (NO_JITTER, 2, 2.0),
        (NO_JITTER, 3, 4.0),
        (NO_JITTER, 9, 256.0),
        (NO_JITTER, 10, 300.0),  # 512 capped
        (NO_JITTER, 11, 300.0),
        (Backoff(initial=5.0, max=100.0, multiplier=1.5, jitter=0.0), 3, 11.25),
        (Backoff(initial=5.0, max=100.0, multiplier=1.0, jitter=0.0), 50, 5.0),
        (Backoff(initial=7.0, max=7.0, multiplier=4.0, jitter=0.0), 5, 7.0),
    ],
)
def test_delay_grows_by_the_multiplier_up_to_max(backoff: Backoff, failures: int,
                                                 expected: float) -> None:
    assert delay(backoff, failures, 0.5) == pytest.approx(expected)


@pytest.mark.parametrize("backoff", BACKOFFS)
@pytest.mark.parametrize("rand", RANDS)
@pytest.mark.parametrize("failures", [1, 2, 3, 5, 8, 13, 40])
def test_jitter_stays_within_bounds(backoff: Backoff, rand: float, failures: int) -> None:
    b = base(backoff, failures)
    got = delay(backoff, failures, rand)
    floor = backoff.initial / 2
    assert got <= backoff.max
    assert got >= floor
    assert max(b * (1 - backoff.jitter), floor) - 1e-9 <= got <= b * (1 + backoff.jitter) + 1e-9


@pytest.mark.parametrize(
    ("backoff", "failures", "rand", "expected"),
    [
        pytest.param(Backoff(jitter=0.1), 1, 0.0, 0.9, id="rand-0-low-edge"),
        pytest.param(Backoff(jitter=0.1), 1, 0.5, 1.0, id="rand-half-is-base"),
        pytest.param(Backoff(jitter=0.1), 1, ALMOST_ONE, 1.1, id="rand-to-1-high-edge"),
        pytest.param(Backoff(jitter=0.1), 4, 0.0, 7.2, id="rand-0-later-attempt"),
        pytest.param(Backoff(jitter=0.1), 20, ALMOST_ONE, 300.0, id="high-edge-capped-at-max"),
        pytest.param(Backoff(jitter=0.1), 20, 0.0, 270.0, id="low-edge-under-max"),
        pytest.param(Backoff(jitter=1.0), 1, 0.0, 0.5, id="full-jitter-floored-at-half"),
        pytest.param(Backoff(jitter=1.0), 3, 0.0, 0.5, id="floor-on-later-attempt"),
        pytest.param(Backoff(jitter=1.0), 1, ALMOST_ONE, 2.0, id="full-jitter-doubles"),
        pytest.param(Backoff(initial=4.0, max=4.0, jitter=1.0), 1, ALMOST_ONE, 4.0,
                     id="initial-equals-max-capped"),
        pytest.param(Backoff(initial=4.0, max=4.0, jitter=1.0), 1, 0.0, 2.0,
                     id="initial-equals-max-floored"),
    ],
)
def test_delay_edges(backoff: Backoff, failures: int, rand: float, expected: float) -> None:
    assert delay(backoff, failures, rand) == pytest.approx(expected)


@pytest.mark.parametrize("failures", [1_100, 10**6, 10**18, sys.maxsize, 2**200])
@pytest.mark.parametrize("rand", [0.0, 0.5, ALMOST_ONE])
@pytest.mark.parametrize(
    "backoff",
    [Backoff(), Backoff(initial=1.0, max=1.0, multiplier=1.0),
     Backoff(initial=1e-3, max=1e8, multiplier=1e300, jitter=1.0)],
)
def test_huge_failure_counts_do_not_overflow(failures: int, rand: float,
                                             backoff: Backoff) -> None:
    got = delay(backoff, failures, rand)
    assert math.isfinite(got)
    assert backoff.max * (1 - backoff.jitter) <= got <= backoff.max


@pytest.mark.parametrize("failures", [0, -1])
def test_delay_counts_failures_from_one(failures: int) -> None:
    with pytest.raises(ValueError, match="from 1"):
        delay(Backoff(), failures, 0.5)


# -- decide -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("failures", "max_attempts", "retryable", "retry_delay"),
    [
        (1, 3, True, 1.0),
        (2, 3, True, 2.0),
        (3, 3, True, None),
        (4, 3, True, None),
        (1, 1, True, None),
        (1, 0, True, 1.0),
        (9, 0, True, 256.0),
        (10**6, 0, True, 300.0),
        (1, 3, False, None),
        (1, 0, False, None),
    ],
)
def test_decide(failures: int, max_attempts: int, retryable: bool,
                retry_delay: float | None) -> None:
    decision = decide(failures=failures, max_attempts=max_attempts, backoff=NO_JITTER,
                      now=NOW, rand=0.5, retryable=retryable)
    if retry_delay is None:
        assert isinstance(decision, GiveUp)
        assert ("non-retryable" in decision.reason) is (not retryable)
    else:
        assert decision == RetryAt(NOW + retry_delay)


def test_decide_uses_the_same_jittered_delay() -> None:
    backoff = Backoff(jitter=0.5)
    for rand in RANDS:
        decision = decide(failures=3, max_attempts=0, backoff=backoff, now=NOW, rand=rand)
        assert decision == RetryAt(NOW + delay(backoff, 3, rand))


# -- Backoff's own rules ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0.0}, "initial"),
        ({"initial": -1.0}, "initial"),
        ({"initial": math.nan}, "initial"),
        ({"initial": 10.0, "max": 5.0}, "max"),
        ({"max": 0.5}, "max"),
        ({"max": math.nan}, "max"),
        ({"multiplier": 0.99}, "multiplier"),
        ({"multiplier": 0.0}, "multiplier"),
        ({"multiplier": math.nan}, "multiplier"),
        ({"jitter": -0.01}, "jitter"),
        ({"jitter": 1.01}, "jitter"),
        ({"jitter": math.nan}, "jitter"),
    ],
)
def test_backoff_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Backoff(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 5.0, "max": 5.0},
        {"initial": 1e-6},
        {"multiplier": 1.0},
        {"jitter": 0.0},
        {"jitter": 1.0},
    ],
)
def test_backoff_accepts_the_edges(kwargs: dict[str, Any]) -> None:
    Backoff(**kwargs)
