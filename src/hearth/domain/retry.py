"""Backoff math and the one decision "retry or give up, and when".

Pure: the clock (``now``) and randomness (``rand`` in [0, 1)) are passed in. Worker
failure, lease expiry and execution timeout all call :func:`decide`, so the rule lives
in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from hearth.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``initial * multiplier**(n-1)`` capped at ``max``.

    ``jitter`` is a fraction in [0, 1]: the delay is spread uniformly over
    ``delay * (1 ± jitter)`` and then capped again, so jitter never exceeds ``max``.
    ``initial`` is never zero and a delay never drops below half of it: a failed
    attempt is always followed by a pause.
    """

    initial: float = 1.0
    max: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValidationError("backoff initial delay must be greater than 0 seconds")
        if not self.max >= self.initial:  # written so that NaN is refused too
            raise ValidationError(
                f"backoff max ({self.max}s) must be at least the initial delay ({self.initial}s)"
            )
        if not self.multiplier >= 1:
            raise ValidationError("backoff multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValidationError("backoff jitter must be a fraction between 0 and 1")


def delay(backoff: Backoff, failures: int, rand: float) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    # Grow step by step but stop at the cap: no overflow, and at most a few hundred
    # steps whatever the failure count (a multiplier of 1 never grows at all).
    base = backoff.initial
    if backoff.multiplier > 1:
        for _ in range(min(failures - 1, 2048)):
            base *= backoff.multiplier
            if base >= backoff.max:
                base = backoff.max
                break
    spread = base * backoff.jitter * (2.0 * rand - 1.0)
    return max(min(base + spread, backoff.max), min(backoff.initial, backoff.max) / 2)


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again, not before ``at`` (epoch seconds)."""

    at: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No attempts left: the job is dead."""

    reason: str


Decision = RetryAt | GiveUp


def decide(
    *,
    failures: int,
    max_attempts: int,
    backoff: Backoff,
    now: float,
    rand: float,
    retryable: bool = True,
) -> Decision:
    """Decide after a failed attempt. ``failures`` includes the attempt that just failed.

    ``max_attempts == 0`` means unlimited attempts. A non-retryable error gives up at once.
    """
    if not retryable:
        return GiveUp("the handler reported a non-retryable error")
    if max_attempts and failures >= max_attempts:
        return GiveUp(f"gave up after {failures} failed attempt(s) of {max_attempts}")
    return RetryAt(now + delay(backoff, failures, rand))
